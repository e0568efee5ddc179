package pgserver

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// confFile is written next to postgresql.conf and included from its end, so
// that its settings win over initdb's.
const confFile = "lockguard.conf"

// writeConf writes the server settings. It is rewritten when Start has to pick
// another port.
func (s *Server) writeConf(opts Options) error {
	settings := [][2]string{
		{"listen_addresses", s.Host},
		{"port", strconv.Itoa(s.Port)},
		{"unix_socket_directories", s.SocketDir},
		{"max_connections", "300"},
		{"shared_buffers", "32MB"},
		// Throwaway data: trade durability for speed.
		{"fsync", "off"},
		{"synchronous_commit", "off"},
		{"full_page_writes", "off"},
		// The postmaster's stderr goes to LogFile via pg_ctl -l.
		{"logging_collector", "off"},
		{"log_line_prefix", "%m [%p] %q%u@%d "},
		{"lc_messages", "C"},
	}
	if s.CertFile != "" {
		settings = append(settings,
			[2]string{"ssl", "on"},
			[2]string{"ssl_cert_file", s.CertFile},
			[2]string{"ssl_key_file", s.KeyFile},
			[2]string{"ssl_ca_file", s.CAFile},
		)
	}
	keys := make([]string, 0, len(opts.Settings))
	for k := range opts.Settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		settings = append(settings, [2]string{k, opts.Settings[k]})
	}

	var b strings.Builder
	b.WriteString("# Written by lockguard's pgserver; later lines win.\n")
	for _, kv := range settings {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], quoteConf(kv[1]))
	}
	if err := s.writeFile(filepath.Join(s.DataDir, confFile), []byte(b.String()), 0o600); err != nil {
		return err
	}

	main := filepath.Join(s.DataDir, "postgresql.conf")
	conf, err := os.ReadFile(main)
	if err != nil {
		return fmt.Errorf("reading postgresql.conf: %w", err)
	}
	include := "include '" + confFile + "'\n"
	if strings.HasSuffix(string(conf), include) {
		return nil
	}
	f, err := os.OpenFile(main, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("writing postgresql.conf: %w", err)
	}
	if _, err := f.WriteString("\n" + include); err != nil {
		f.Close()
		return fmt.Errorf("writing postgresql.conf: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing postgresql.conf: %w", err)
	}
	return nil
}

// writeHBA replaces pg_hba.conf with the fixed authentication matrix described
// in the package documentation.
func (s *Server) writeHBA(tls bool) error {
	types := []string{"host"}
	if tls {
		types = []string{"hostssl", "host"}
	}
	rules := []struct{ user, method string }{
		{ScramUser, "scram-sha-256"},
		{MD5User, "md5"},
		{PasswordUser, "password"},
		{"all", "trust"},
	}
	var b strings.Builder
	b.WriteString("# Written by lockguard's pgserver.\n")
	b.WriteString("# TYPE\tDATABASE\tUSER\tADDRESS\tMETHOD\n")
	b.WriteString("local\tall\tall\t\ttrust\n")
	for _, r := range rules {
		for _, t := range types {
			for _, addr := range []string{"127.0.0.1/32", "::1/128"} {
				fmt.Fprintf(&b, "%s\tall\t%s\t%s\t%s\n", t, r.user, addr, r.method)
			}
		}
	}
	return s.writeFile(filepath.Join(s.DataDir, "pg_hba.conf"), []byte(b.String()), 0o600)
}

// quoteConf quotes v as a postgresql.conf value. Quoting is valid for
// settings of every type; backslashes are escapes inside quotes.
func quoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// quoteLiteral quotes v as an SQL string literal (standard_conforming_strings
// is on by default).
func quoteLiteral(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}
