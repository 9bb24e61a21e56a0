// Command tlspeer is one end of a recorded TLS session, built on Go's crypto/tls.
//
// As server (-mode server) it accepts one connection on -addr, reads one line, answers
// "pong\n", reads until the client closes and closes itself (close_notify). As client
// (-mode client) it connects, writes "ping\n", reads the answer line and closes. Both write
// the session keys to -keylog (NSS key log format) and print one JSON object per line on
// stdout about what happened: "listening", "handshake", "data", "error", "closed".
//
// Standard library only.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"time"
)

var out = json.NewEncoder(os.Stdout)

func emit(event string, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["event"] = event
	_ = out.Encode(fields)
}

func fatal(format string, args ...any) {
	emit("fatal", map[string]any{"error": fmt.Sprintf(format, args...)})
	os.Exit(2)
}

var versions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "TLS 1.2"
	case tls.VersionTLS13:
		return "TLS 1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

var clientAuths = map[string]tls.ClientAuthType{
	"none":     tls.NoClientCert,
	"request":  tls.RequestClientCert,
	"optional": tls.VerifyClientCertIfGiven,
	"require":  tls.RequireAndVerifyClientCert,
}

// remoteAlert is the number of the alert the peer sent, if err carries one. crypto/tls of Go
// 1.19 reports it as a *net.OpError with Op "remote error" around its unexported uint8 alert
// type.
func remoteAlert(err error) (int, bool) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		v := reflect.ValueOf(op.Err)
		if v.Kind() == reflect.Uint8 {
			return int(v.Uint()), true
		}
	}
	return 0, false
}

func errorFields(where string, err error) map[string]any {
	f := map[string]any{"where": where, "error": err.Error()}
	if code, ok := remoteAlert(err); ok {
		f["remote_alert"] = code
	}
	if errors.Is(err, io.EOF) {
		f["eof"] = true
	}
	return f
}

func names(certs []*x509.Certificate) []string {
	cns := []string{}
	for _, c := range certs {
		cns = append(cns, c.Subject.CommonName)
	}
	return cns
}

func pool(path string) *x509.CertPool {
	data, err := os.ReadFile(path)
	if err != nil {
		fatal("%v", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		fatal("no certificate in %s", path)
	}
	return p
}

func stateFields(cs tls.ConnectionState) map[string]any {
	return map[string]any{
		"version":     versionName(cs.Version),
		"cipher":      tls.CipherSuiteName(cs.CipherSuite),
		"resumed":     cs.DidResume,
		"peer_chain":  names(cs.PeerCertificates),
		"verified":    len(cs.VerifiedChains) > 0,
		"server_name": cs.ServerName,
	}
}

func readLine(conn *tls.Conn) (string, error) {
	line, err := bufio.NewReader(conn).ReadString('\n')
	return line, err
}

func main() {
	mode := flag.String("mode", "", "server or client")
	addr := flag.String("addr", "127.0.0.1:9100", "address to listen on or connect to")
	version := flag.String("version", "1.3", "TLS version, pinned: 1.2 or 1.3")
	auth := flag.String("auth", "none", "server: none, request, optional or require")
	certFile := flag.String("cert", "", "certificate chain (PEM, leaf first)")
	keyFile := flag.String("key", "", "private key (PEM)")
	caFile := flag.String("ca", "", "CA certificates to verify the peer with")
	serverName := flag.String("servername", "server.example.test", "client: SNI and name to verify")
	keylog := flag.String("keylog", "", "append the session keys to this file")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of the connection")
	flag.Parse()

	v, ok := versions[*version]
	if !ok {
		fatal("unknown version %q", *version)
	}
	cfg := &tls.Config{MinVersion: v, MaxVersion: v}
	if *keylog != "" {
		f, err := os.OpenFile(*keylog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			fatal("%v", err)
		}
		defer f.Close()
		cfg.KeyLogWriter = f
	}
	var cert *tls.Certificate
	if *certFile != "" {
		c, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fatal("%v", err)
		}
		cert = &c
	}
	switch *mode {
	case "server":
		ca, ok := clientAuths[*auth]
		if !ok {
			fatal("unknown client auth %q", *auth)
		}
		if cert == nil {
			fatal("the server needs -cert and -key")
		}
		cfg.Certificates = []tls.Certificate{*cert}
		cfg.ClientAuth = ca
		if *caFile != "" {
			cfg.ClientCAs = pool(*caFile)
		}
		serve(*addr, cfg, *timeout)
	case "client":
		if *caFile != "" {
			cfg.RootCAs = pool(*caFile)
		}
		cfg.ServerName = *serverName
		connect(*addr, cfg, cert, *timeout)
	default:
		fatal("-mode must be server or client")
	}
}

func serve(addr string, cfg *tls.Config, timeout time.Duration) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fatal("%v", err)
	}
	emit("listening", map[string]any{"addr": ln.Addr().String(), "client_auth": cfg.ClientAuth.String()})
	raw, err := ln.Accept()
	ln.Close()
	if err != nil {
		fatal("%v", err)
	}
	raw.SetDeadline(time.Now().Add(timeout))
	peer := raw.RemoteAddr().(*net.TCPAddr)
	conn := tls.Server(raw, cfg)
	defer func() {
		err := conn.Close()
		f := map[string]any{}
		if err != nil {
			f["error"] = err.Error()
		}
		emit("closed", f)
	}()
	emit("accepted", map[string]any{"client_port": peer.Port})
	if err := conn.Handshake(); err != nil {
		f := errorFields("handshake", err)
		msg := err.Error()
		// what the client's Certificate held, as crypto/tls reported it
		switch {
		case strings.Contains(msg, "client didn't provide a certificate"):
			f["client_certificate"] = "empty"
		case strings.Contains(msg, "failed to verify client certificate"):
			f["client_certificate"] = "rejected"
		}
		emit("error", f)
		return
	}
	f := stateFields(conn.ConnectionState())
	f["client_port"] = peer.Port
	emit("handshake", f)
	line, err := readLine(conn)
	if err != nil {
		emit("error", errorFields("read", err))
		return
	}
	emit("data", map[string]any{"received": line})
	if _, err := conn.Write([]byte("pong\n")); err != nil {
		emit("error", errorFields("write", err))
		return
	}
	emit("data", map[string]any{"sent": "pong\n"})
	// wait for the client's close_notify (or the end of the connection)
	buf := make([]byte, 256)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			emit("data", map[string]any{"received": string(buf[:n])})
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				emit("peer_closed", nil)
			} else {
				emit("error", errorFields("read", err))
			}
			return
		}
	}
}

func connect(addr string, cfg *tls.Config, cert *tls.Certificate, timeout time.Duration) {
	requested := false
	sent := []string{}
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		requested = true
		cas := len(cri.AcceptableCAs)
		if cert == nil {
			emit("certificate_request", map[string]any{"sending": 0, "acceptable_cas": cas})
			return &tls.Certificate{}, nil
		}
		for _, der := range cert.Certificate {
			c, err := x509.ParseCertificate(der)
			if err == nil {
				sent = append(sent, c.Subject.CommonName)
			}
		}
		emit("certificate_request", map[string]any{
			"sending": len(cert.Certificate), "chain": sent, "acceptable_cas": cas,
		})
		return cert, nil
	}
	raw, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		fatal("%v", err)
	}
	raw.SetDeadline(time.Now().Add(timeout))
	local := raw.LocalAddr().(*net.TCPAddr)
	emit("connected", map[string]any{"client_port": local.Port})
	conn := tls.Client(raw, cfg)
	defer func() {
		err := conn.Close()
		f := map[string]any{}
		if err != nil {
			f["error"] = err.Error()
		}
		emit("closed", f)
	}()
	if err := conn.Handshake(); err != nil {
		f := errorFields("handshake", err)
		f["requested"] = requested
		f["sent_chain"] = sent
		emit("error", f)
		return
	}
	f := stateFields(conn.ConnectionState())
	f["requested"] = requested
	f["sent_chain"] = sent
	f["client_port"] = local.Port
	emit("handshake", f)
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		emit("error", errorFields("write", err))
		return
	}
	emit("data", map[string]any{"sent": "ping\n"})
	line, err := readLine(conn)
	if err != nil {
		emit("error", errorFields("read", err))
		return
	}
	emit("data", map[string]any{"received": line})
}
