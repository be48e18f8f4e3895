# ckptd build, test and benchmark entry points. Run as root.
GO        ?= go
BIN       := bin
STATE     ?= /var/lib/ckptd
SOCKET    ?= /run/ckptd/ckptd.sock
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/ckptd/ckptd/daemon.Version=$(VERSION) -X main.version=$(VERSION)

.PHONY: all deps bench-deps build run install test unit integration bench proto vet clean fuzz faults zdtm

all: build

deps:
	bash scripts/deps.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ckptd ./cmd/ckptd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ckptctl ./cmd/ckptctl
	$(GO) build -o $(BIN)/ckptd-term ./cmd/ckptd-term

run: deps build
	$(BIN)/ckptd --root $(STATE) --socket $(SOCKET)

# ckptd as a service: binaries under $(PREFIX), the systemd unit, and a
# default /etc/ckptd/config.toml (an existing one is kept). DESTDIR
# stages it elsewhere (the tests do).
PREFIX ?= /usr/local
install: build
	install -D -m 0755 $(BIN)/ckptd $(DESTDIR)$(PREFIX)/bin/ckptd
	install -D -m 0755 $(BIN)/ckptctl $(DESTDIR)$(PREFIX)/bin/ckptctl
	install -D -m 0755 $(BIN)/ckptd-term $(DESTDIR)$(PREFIX)/bin/ckptd-term
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|' packaging/ckptd.service > $(BIN)/ckptd.service
	install -D -m 0644 $(BIN)/ckptd.service $(DESTDIR)/etc/systemd/system/ckptd.service
	test -e $(DESTDIR)/etc/ckptd/config.toml || install -D -m 0644 packaging/config.toml $(DESTDIR)/etc/ckptd/config.toml
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# The whole suite: unit tests and the integration tests that drive the real
# CRIU and real processes (root required).
test: deps vet
	$(GO) test -count=1 -timeout 30m ./...
	FUZZTIME=2000x bash scripts/fuzz.sh

# The larger fault runs whose small versions are in make test: the
# crash-point campaigns (50 kills of ckptd per operation, and per side of
# a migration), 2 minutes of load, and the CRIU and ckptd kill campaigns.
CAMPAIGN_RUNS ?= 50
LOAD ?= 2m
faults: deps
	CKPTD_CAMPAIGN_RUNS=$(CAMPAIGN_RUNS) CKPTD_LOAD=$(LOAD) $(GO) test -count=1 -v -timeout 75m \
		-run 'TestCrashPointCampaign|TestContainerCrashCampaign|TestMigrationCrashCampaign|TestTerminalCrashCampaign|TestLoad$$|TestCRIUKilledCampaign|TestDaemonKilledCampaign' ./integration/ 2>&1 | \
		grep -av '^        time=' | tee faults.log

# Every fuzzer of outside input (peer messages, records, refs, config,
# CRIU images) for FUZZTIME each.
FUZZTIME ?= 60s
fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

# CRIU's own zdtm static tests, with raw CRIU and through ckptd, compared
# (scripts/zdtm.sh; about an hour). Not part of make test.
zdtm: deps build
	bash scripts/zdtm.sh

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /integration)

integration: deps
	$(GO) test -count=1 -v -timeout 30m ./integration/

vet:
	$(GO) vet ./...

# Benchmarks, same run: ckptctl against raw CRIU (memload), and against
# ctr and podman (a busybox container).
BENCH_MIB ?= 1024
bench: deps bench-deps build
	$(GO) run ./bench --mib $(BENCH_MIB) --process-mib 256,$(BENCH_MIB)

proto:
	command -v protoc >/dev/null || apt-get install -y -qq protobuf-compiler
	GOBIN=$(CURDIR)/$(BIN)/tools $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/$(BIN)/tools $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(CURDIR)/$(BIN)/tools:$$PATH protoc -I api/v1 --go_out=paths=source_relative:api/v1 \
		--go-grpc_out=paths=source_relative:api/v1 api/v1/ckptd.proto

clean:
	rm -rf $(BIN)

# podman, for the container benchmark's comparison, and the JDK for the warm start's
# (not needed by tests).
bench-deps:
	@command -v podman >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman >/dev/null
	@test -x /usr/bin/redis-server -a -x /usr/sbin/nginx || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server nginx >/dev/null
	@command -v javac >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends default-jdk-headless >/dev/null
