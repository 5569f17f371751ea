# simpled — see README.md. `make run` starts a server with the embedded store on
# 127.0.0.1:5060 (udp+tcp); `make test` is what CI runs.
GO        ?= go
FUZZTIME  ?= 10s
BIN       := bin/simpled
# Debian packages the tests use: a real Redis (and redis-cli for Redis Cluster), sipp, baresip
# and linphonec.
TEST_DEBS := redis-server redis-tools sip-tester baresip linphone-cli
# The checkers, built from the Go module proxy at these versions into bin/tools (once per version).
# The vulnerability database is built offline from the vulndb module's OSV files: bump
# VULNDB_VERSION to learn of newer vulnerabilities.
TOOLS            := $(CURDIR)/bin/tools
GOLANGCI_VERSION := v2.15.0
VULN_VERSION     := v1.9.0
VULNDB_VERSION   := v0.0.0-20261105234957-e22db6528018
GOLANGCI_LINT    := $(TOOLS)/golangci-lint-$(GOLANGCI_VERSION)/golangci-lint
GOVULNCHECK      := $(TOOLS)/govulncheck-$(VULN_VERSION)/govulncheck
INDEXDB          := $(TOOLS)/indexdb-$(VULNDB_VERSION)/indexdb
VULNDB           := $(TOOLS)/vulndb-$(VULNDB_VERSION)
# go.mod names the toolchain with the standard library's security fixes; this lets the go
# command fetch it where the machine's default (go.env) says GOTOOLCHAIN=local.
export GOTOOLCHAIN ?= auto
# Fuzz targets: package:Target
FUZZ      := ./registrar:FuzzRegister ./base/transport:FuzzCheck ./internal/config:FuzzParse ./auth:FuzzParseAuthorization ./base/sipx:FuzzParseDeltaSeconds ./cpim:FuzzRoundTrip ./pidf:FuzzParse ./pidf:FuzzWatcherInfo ./base/transport:FuzzSTUN ./base/transport:FuzzFramer ./base/transport:FuzzFlowToken ./base/sipx:FuzzViaPrints ./base/sipx:FuzzSeals ./msgcheck:FuzzCPIMAddress ./base/sipgox:FuzzUDPTransactionsTake ./base/sipx:FuzzLeanParser ./base/sipx:FuzzTokens ./registrar:FuzzStoredContact ./presence:FuzzSubRecord

.PHONY: all build run test vet lint vulncheck unit fuzz deps bench bench-quick bench-go bench-deps bench-scale bench-register bench-message bench-publish bench-subscribe flood clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/simpled

run: build
	./$(BIN) $(ARGS)

test: deps vet lint vulncheck unit fuzz

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# lint: golangci-lint with .golangci.yml (each linter and exclusion says why).
lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

# vulncheck: govulncheck against a database built from the pinned vulndb module (no network
# beyond the Go module proxy); it fails on any vulnerability the code reaches.
vulncheck: $(GOVULNCHECK) $(VULNDB)/index/db.json
	$(GOVULNCHECK) -db file://$(VULNDB) ./...

$(GOLANGCI_LINT):
	GOBIN=$(@D) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

$(GOVULNCHECK):
	GOBIN=$(@D) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(VULN_VERSION)

$(INDEXDB):
	GOBIN=$(@D) $(GO) install golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION)

# The vulndb module holds the OSV entries (data/osv/*.json); indexdb writes the layout
# govulncheck reads (index/db.json, index/modules.json, ID/<id>.json).
$(VULNDB)/index/db.json: $(INDEXDB)
	@set -e; src=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	test -d "$$src/data/osv" || { echo "vulndb module has no data/osv"; exit 1; }; \
	rm -rf $(VULNDB).tmp; $(INDEXDB) -vulns "$$src/data/osv" -out $(VULNDB).tmp; \
	rm -rf $(VULNDB); mv $(VULNDB).tmp $(VULNDB)

# The ten-thousand-connection test runs without -race: the race detector caps a process at
# 8128 goroutines. So does the short flood test (bench/flood, 5 s): it starts simpled as a
# process and its attackers must keep their pace; it builds ./cmd/simpled with the cache the
# line before warmed.
unit:
	$(GO) test -race -count=1 -timeout 12m ./...
	$(GO) test -count=1 -run '^TestIdleConnectionsBounded$$' ./internal/server/
	$(GO) test -count=1 -run '^TestFlood$$' ./bench/flood/

# A run that fails with only "context deadline exceeded" and wrote no failing input is Go's
# fuzz-coordinator race at the -fuzztime boundary (go.dev/issue/75804, fixed in Go 1.27), not a
# finding: it is run once more. Any other failure fails at once.
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; for t in $(FUZZ); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		for try in 1 2; do \
			echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
			if $(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg > $$log 2>&1; then cat $$log; break; fi; \
			cat $$log; \
			if [ $$try = 1 ] && grep -q 'context deadline exceeded' $$log && ! grep -q 'Failing input written' $$log; then \
				echo "fuzz $$name: deadline race at -fuzztime, no failing input: running it again"; continue; fi; \
			exit 1; \
		done; \
	done

# deps installs the Debian packages the tests need when run as root, else says how.
deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null 2>&1 || missing="$$missing redis-tools"; \
	command -v sipp >/dev/null 2>&1 || missing="$$missing sip-tester"; \
	command -v baresip >/dev/null 2>&1 || missing="$$missing baresip"; \
	command -v linphonec >/dev/null 2>&1 || missing="$$missing linphone-cli"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing test dependencies; install them with:"; \
			echo "  sudo apt-get install -y $(TEST_DEBS)"; \
		fi; \
	fi

# make bench: Go benchmarks of the core packages, then every SIP load against simpled (memory,
# Redis) and Kamailio, interleaved, and one table (bench/bench.sh, BENCHMARKS.md; about 2 h).
# make bench-quick: the same at fixed rates, one round (under 5 minutes).
bench:
	bench/bench.sh

bench-quick:
	MODE=quick bench/bench.sh

bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem ./registrar/... ./proxy/... ./base/sipgox/... ./presence/... ./pidf/... ./cpim/... ./storage/... ./auth/... ./base/transport/... ./internal/server/...

# The tools of the SIP loads: sipp, Kamailio, Redis (installed with apt-get as root).
bench-deps:
	bench/deps.sh

# bench/scale: 100,000 registrations and subscriptions on Redis (bytes each, RSS, restart).
bench-scale:
	$(GO) run ./bench/scale

# SIP loads: simpled (memory, Redis) against Kamailio, interleaved (see bench/README.md).
bench-register:
	SCENARIO=register bench/compare.sh

bench-message:
	SCENARIO=message bench/compare.sh

bench-publish:
	SCENARIO=publish RATES_publish="1000 2000 3000 4000 5000 6000" bench/compare.sh

bench-subscribe:
	SCENARIO=subscribe RATES_subscribe="1000 2000 3000 4000 5000 6000" bench/compare.sh

# The flood test of issue 15 (bench/flood): 60 s of attack traffic at 50,000 packets/s from
# 127.0.0.2 and 127.0.0.3 against simpled (memory store; FLOOD_REDIS=redis://HOST:PORT/DB adds
# simpled on that Redis) and then Kamailio with pike (bench/kamailio/flood.cfg), a legitimate
# client on 127.0.0.1 throughout; one table. FLOOD_ARGS adds flags (-duration 30s, -rate ...).
FLOOD_TARGETS ?= simpled,kamailio
flood:
	$(GO) run ./bench/flood -target $(FLOOD_TARGETS) $(FLOOD_ARGS)
	@if [ -n "$(FLOOD_REDIS)" ]; then $(GO) run ./bench/flood -target simpled -store "$(FLOOD_REDIS)" $(FLOOD_ARGS); fi

clean:
	rm -rf bin
