package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

var (
	warmOn = flag.Bool("warm", true, "benchmark warm starts: time to the first answer of a JVM and a Python HTTP app started from a checkpoint (run --from) against their cold start")
	nwarm  = flag.Int("warm-rounds", 5, "starts per app and mode")
)

// warmJava is a small HTTP server that starts as frameworks do: it loads
// a few thousand of the JDK's classes and fills a cache before it listens.
const warmJava = `import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.*;
import java.security.MessageDigest;
import java.util.*;

public class Warm {
    public static void main(String[] args) throws Exception {
        int loaded = 0;
        FileSystem jrt = FileSystems.getFileSystem(URI.create("jrt:/"));
        for (String mod : new String[] {"java.base", "java.xml", "java.net.http", "java.sql", "java.logging"}) {
            try (var paths = Files.walk(jrt.getPath("/modules", mod))) {
                for (Path p : (Iterable<Path>) paths::iterator) {
                    String s = p.toString();
                    if (!s.endsWith(".class") || s.contains("$") || s.endsWith("module-info.class")) continue;
                    String name = s.substring(("/modules/" + mod + "/").length(), s.length() - 6).replace('/', '.');
                    try { Class.forName(name, false, Warm.class.getClassLoader()); loaded++; } catch (Throwable t) { }
                }
            }
        }
        Map<String, String> cache = new HashMap<>();
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        for (int i = 0; i < 200000; i++) {
            cache.put("k" + i, HexFormat.of().formatHex(md.digest(("v" + i).getBytes())));
        }
        String answer = "classes " + loaded + " cache " + cache.size() + "\n";
        HttpServer srv = HttpServer.create(new InetSocketAddress(8080), 64);
        srv.createContext("/", ex -> {
            byte[] b = answer.getBytes();
            ex.sendResponseHeaders(200, b.length);
            ex.getResponseBody().write(b);
            ex.close();
        });
        srv.start();
    }
}
`

// warmPython imports a large set of the standard library and precomputes
// a table before it serves.
const warmPython = `import importlib, http.server, socketserver
mods = """asyncio email email.mime.text email.parser http.client json xml.etree.ElementTree xml.dom.minidom
sqlite3 decimal fractions statistics unittest unittest.mock argparse logging logging.handlers csv zipfile tarfile
gzip bz2 lzma hashlib hmac secrets ssl uuid urllib.request urllib.parse html.parser difflib textwrap pprint
dataclasses typing enum functools itertools collections concurrent.futures multiprocessing subprocess shutil
tempfile glob fnmatch pathlib datetime calendar zoneinfo locale gettext codecs unicodedata string re struct
array heapq bisect queue threading selectors socket ipaddress mimetypes base64 binascii quopri plistlib
configparser tomllib inspect ast dis tokenize pydoc doctest trace timeit cProfile pstats pickle shelve dbm
copy weakref contextlib abc numbers operator random math cmath wave colorsys imaplib smtplib poplib ftplib
xmlrpc.client xmlrpc.server wsgiref.simple_server http.cookiejar http.cookies""".split()
for m in mods:
    importlib.import_module(m)
table = {i: pow(i, 65537, 2**61 - 1) for i in range(1_500_000)}
answer = ("modules %d table %d\n" % (len(mods), len(table))).encode()

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def log_message(self, *a):
        pass

socketserver.TCPServer.allow_reuse_address = True
http.server.HTTPServer(("", 8080), H).serve_forever()
`

// benchWarm starts each app cold (ckptctl run) and warm (ckptctl run
// --from a checkpoint of it warmed up), in turns, and times each from the
// command to the first byte of an answer on its published port.
func benchWarm(work string) {
	defer keepHostNetwork()()
	d := startDaemon(work, "warm", filepath.Join(work, "no-containerd.sock"))
	defer d.stop()
	dir := filepath.Join(work, "warm")
	check(os.MkdirAll(dir, 0o755))
	check(os.WriteFile(filepath.Join(dir, "Warm.java"), []byte(warmJava), 0o644))
	run("javac", "-d", dir, filepath.Join(dir, "Warm.java"))
	apps := []struct {
		name, goal string
		argv       []string
	}{
		// No perf data file: the copies would share the original's.
		{"java (default-jdk)", "<= 0.2x", []string{"/usr/bin/java", "-XX:-UsePerfData", "-cp", dir, "Warm"}},
		{"python3", "-", []string{"/usr/bin/python3", "-c", warmPython}},
	}
	fmt.Printf("\nwarm start: ckptctl run (cold) against ckptctl run --from a warmed-up checkpoint, command to first answer, %d rounds, interleaved\n\n", *nwarm)
	fmt.Printf("%-20s %24s %24s %8s %8s\n", "first answer (ms)", "cold min/med/max", "warm min/med/max", "ratio", "goal")
	for _, a := range apps {
		name := strings.Fields(a.name)[0]
		ckpt := warmCheckpoint(d, name, a.argv)
		var cold, warm []sample
		for i := -1; i < *nwarm; i++ { // round -1 warms the page cache and both paths
			c := startTimed(d, fmt.Sprintf("%s-cold-%d", name, i), append([]string{"--"}, a.argv...))
			w := startTimed(d, fmt.Sprintf("%s-warm-%d", name, i), []string{"--from", ckpt})
			if i >= 0 {
				cold, warm = append(cold, c), append(warm, w)
			}
		}
		_, coldMid, _ := spread(cold, wallOf)
		_, warmMid, _ := spread(warm, wallOf)
		fmt.Printf("%-20s %24s %24s %8s %8s\n", a.name, mmmWall(cold), mmmWall(warm), ratio(warmMid, coldMid), a.goal)
	}
	fmt.Println("(CRaC reports start-ups one to two orders of magnitude shorter; a warm start here is a restore of the")
	fmt.Println(" whole process, its network namespace made and wired, and the first request)")
}

// warmCheckpoint runs argv until it answers, checkpoints it and ends it.
func warmCheckpoint(d *daemon, name string, argv []string) string {
	src := name + "-source"
	startTimed(d, src, append([]string{"--"}, argv...))
	// Kept running a moment after its first answer, as a warmed-up
	// service would be when checkpointed.
	c := createJSON(d, "--leave-running", "--name", src+"-ckpt", src)
	d.ctl("kill", src)
	return c.Name
}

// startTimed runs ckptctl run --name name with args, on a new published
// port, and times it to the first byte of an HTTP answer. The workload is
// ended, unless it is a checkpoint's source.
func startTimed(d *daemon, name string, args []string) sample {
	port := freePort()
	start := time.Now()
	d.ctl(append([]string{"run", "--name", name, "--net", "private", "-p", port + ":8080"}, args...)...)
	firstAnswer(port)
	took := time.Since(start)
	if !strings.HasSuffix(name, "-source") {
		d.ctl("kill", name)
	}
	return sample{wall: took}
}

// firstAnswer waits until 127.0.0.1:port answers an HTTP GET.
func firstAnswer(port string) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if get(port) == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	fatalf("nothing answered on port %s within 2 minutes", port)
}
