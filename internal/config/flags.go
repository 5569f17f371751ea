package config

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Flags are the command-line switches that are not Options.
type Flags struct {
	// Check is -t: check the configuration, print it, bind nothing.
	Check bool
	// Version is -version: print the version and exit.
	Version bool
	// ConfigFile is -config FILE ("" when not given).
	ConfigFile string
}

// listFlag is a repeatable flag. The first use replaces the default (or the file's list);
// later uses append.
type listFlag struct {
	def    []string // shown in the usage only
	values []string
}

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.def, ", ")
}

func (l *listFlag) Set(s string) error {
	l.values = append(l.values, s)
	return nil
}

// stringFlags maps each string flag to its Options field and YAML key, in usage order.
var stringFlags = []struct {
	name, key, usage string
	field            func(*Options) *string
}{
	{"store", "store", "`URL` of the store: memory | redis://[user:pass@]HOST:PORT/DB | rediss://... | redis+cluster://HOST:PORT[,HOST:PORT...]", func(o *Options) *string { return &o.Store }},
	{"http", "http", "`HOST:PORT` of /metrics, /healthz, /readyz and the admin API; \"\" disables", func(o *Options) *string { return &o.HTTP }},
	{"users", "users", "`FILE` of digest credentials, one per line: user@domain:password or user@domain:realm:HA1", func(o *Options) *string { return &o.UsersFile }},
	{"tls-cert", "tls_cert", "certificate `FILE` (PEM) for tls:// and wss:// listeners", func(o *Options) *string { return &o.TLSCert }},
	{"tls-key", "tls_key", "private key `FILE` (PEM) for tls:// and wss:// listeners", func(o *Options) *string { return &o.TLSKey }},
	{"tls-client-ca", "tls_client_ca", "CA bundle `FILE` (PEM) that client certificates on tls:// and wss:// listeners are verified against; \"\" asks none", func(o *Options) *string { return &o.TLSClientCA }},
	{"tls-ca", "tls_ca", "CA bundle `FILE` (PEM) that outbound TLS verifies servers against (default the system's roots)", func(o *Options) *string { return &o.TLSCA }},
	{"log-level", "log_level", "log `LEVEL`: debug, info, warn or error", func(o *Options) *string { return &o.LogLevel }},
	{"log-format", "log_format", "log `FORMAT`: console or json (default console on a terminal, json otherwise)", func(o *Options) *string { return &o.LogFormat }},
	{"dns", "proxy.dns", "`HOST:PORT` of the DNS server that locates other domains (default the system's resolver)", func(o *Options) *string { return &o.Proxy.DNS }},
	{"admin-token-file", "admin.token_file", "`FILE` holding the bearer token of the admin API and the profiler (at least 16 bytes); needed when -http is not loopback", func(o *Options) *string { return &o.Admin.TokenFile }},
	{"node-id", "node_id", "`ID` of this node among nodes sharing a store (default derived from the host name)", func(o *Options) *string { return &o.NodeID }},
}

// FromArgs builds the Options from the command line args (without the program name): it
// parses the flags, reads the -config file if any, then lets every flag given on the command
// line override the file (nats MergeOptions). -listen and -domain are repeatable, and when
// given they replace the file's (or default) list instead of adding to it. With -version
// nothing is read: FromArgs returns Default().
//
// Errors:
//   - an unknown flag, a flag without its value or a stray argument: the flag package prints
//     the problem and the usage on stderr, and the error matches ErrUsage (exit 2); for -h or
//     -help it also matches flag.ErrHelp (exit 0);
//   - otherwise a *Errors with every problem of the file (at file:line:col) and of the flag
//     values (named by flag, "-listen: ..."); Options and Flags are returned as far as they
//     could be built.
func FromArgs(args []string, stderr io.Writer) (Options, Flags, error) {
	def := Default()
	fs := flag.NewFlagSet("simpled", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: simpled [flags]\n\nA SIP registrar, proxy and presence server.\n\nFlags:\n")
		fs.PrintDefaults()
	}

	var f Flags
	fs.StringVar(&f.ConfigFile, "config", "", "YAML configuration `FILE`; flags given on the command line override it")
	listen := &listFlag{def: def.Listen}
	fs.Var(listen, "listen", "SIP listener `URI`, repeatable, replaces the default: udp://HOST:PORT, tcp://, tls://, ws://, wss:// (TLS needs -tls-cert and -tls-key); port 0 picks a free port")
	domain := &listFlag{def: def.Domains}
	fs.Var(domain, "domain", "SIP domain `NAME` this server is the registrar and presence agent for, repeatable, replaces the default")
	strs := make([]*string, len(stringFlags))
	for i, sf := range stringFlags {
		strs[i] = fs.String(sf.name, *sf.field(&def), sf.usage)
	}
	pprofFlag := fs.Bool("pprof", def.Pprof, "serve Go's profiler under /debug/pprof/ on the -http listener (needs -admin-token-file)")
	fs.BoolVar(&f.Check, "t", false, "check the configuration, print what would run and exit 0, or list every error and exit 1")
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")

	if err := fs.Parse(args); err != nil {
		return def, f, fmt.Errorf("config: %w: %w", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return def, f, fmt.Errorf("config: %w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	if f.Version {
		return def, f, nil
	}

	o := def
	src := sources{}
	errs := &Errors{}
	if f.ConfigFile != "" {
		data, err := os.ReadFile(f.ConfigFile)
		if err != nil {
			errs.add(&Error{Key: "-config", Msg: err.Error(), Err: err})
		} else {
			decode(data, f.ConfigFile, &o, src, errs)
		}
	}

	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "listen":
			o.Listen = listen.values
			src.setFlag("listen", "-listen")
		case "domain":
			o.Domains = lowerAll(domain.values)
			src.setFlag("domain", "-domain")
		case "pprof":
			o.Pprof = *pprofFlag
			src.setFlag("pprof", "-pprof")
		}
		for i, sf := range stringFlags {
			if fl.Name == sf.name {
				*sf.field(&o) = *strs[i]
				src.setFlag(sf.key, "-"+sf.name)
			}
		}
	})

	o.validate(src, errs)
	return o, f, errs.err()
}
