// Command tcpload is the tests' network server: it listens on loopback and
// starts a client process of its own that holds one established connection
// to it; the client sends a sequence number every 50 ms, the server echoes
// it, and the client checks that every echo is the next one. It prints
// "ok N" lines, and "ERROR" on a lost, repeated or reordered message.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "address to serve on")
	client := flag.String("client", "", "run as the client of this address")
	produce := flag.String("produce", "", "send numbered messages to this address, every 10 ms")
	consume := flag.String("consume", "", "listen on this address for a producer and check its messages")
	flag.Parse()
	switch {
	case *client != "":
		runClient(*client)
		return
	case *produce != "":
		runProducer(*produce)
		return
	case *consume != "":
		runConsumer(*consume)
		return
	}
	// Go listens with MPTCP by default, which CRIU cannot dump.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", *addr)
	if err != nil {
		fail(err)
	}
	c := exec.Command("/proc/self/exe", "--client", ln.Addr().String())
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	if err := c.Start(); err != nil {
		fail(err)
	}
	fmt.Println("listening", ln.Addr())
	for {
		conn, err := ln.Accept()
		if err != nil {
			fail(err)
		}
		go echo(conn)
	}
}

func echo(conn net.Conn) {
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		if _, err := fmt.Fprintln(conn, sc.Text()); err != nil {
			return
		}
	}
}

func runClient(addr string) {
	var d net.Dialer
	d.SetMultipathTCP(false)
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		fail(err)
	}
	rd := bufio.NewReader(conn)
	for n := 1; ; n++ {
		if _, err := fmt.Fprintln(conn, n); err != nil {
			fail(err)
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			fail(err)
		}
		if got, _ := strconv.Atoi(strings.TrimSpace(line)); got != n {
			fmt.Printf("ERROR sent %d, echoed %q\n", n, line)
			os.Exit(1)
		}
		fmt.Println("ok", n)
		time.Sleep(50 * time.Millisecond)
	}
}

// runProducer sends 1, 2, 3... and prints "sent N" for each; once its
// connection closes ("closed after N") it idles.
func runProducer(addr string) {
	var d net.Dialer
	d.SetMultipathTCP(false)
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		fail(err)
	}
	for n := 1; ; n++ {
		if _, err := fmt.Fprintln(conn, n); err != nil {
			fmt.Printf("closed after %d: %v\n", n-1, err)
			select {}
		}
		fmt.Println("sent", n)
		time.Sleep(10 * time.Millisecond)
	}
}

// runConsumer takes producers one after another and prints "got N" for
// each message, and "ERROR" for one that is not the next: a message lost,
// or one it had already seen.
func runConsumer(addr string) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		fail(err)
	}
	fmt.Println("listening", ln.Addr())
	last := 0
	for {
		conn, err := ln.Accept()
		if err != nil {
			fail(err)
		}
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			n, _ := strconv.Atoi(sc.Text())
			if n != last+1 {
				fmt.Printf("ERROR got %d after %d\n", n, last)
			}
			last = n
			fmt.Println("got", n)
		}
		fmt.Println("closed at", last)
		conn.Close()
	}
}

func fail(err error) {
	fmt.Println("ERROR", err)
	os.Exit(1)
}
