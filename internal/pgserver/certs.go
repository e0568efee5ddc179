package pgserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// certLifetime is how long test certificates are valid; long enough for a
// `lockguard demo` left running, short enough to be obviously disposable.
const certLifetime = 365 * 24 * time.Hour

// writeTLSFiles creates the test CA and the server's certificate in Dir/tls.
func (s *Server) writeTLSFiles() error {
	dir := filepath.Join(s.Dir, "tls")
	if err := s.mkdir(dir); err != nil {
		return err
	}
	s.CAFile = filepath.Join(dir, "ca.crt")
	s.CAKeyFile = filepath.Join(dir, "ca.key")
	s.CertFile = filepath.Join(dir, "server.crt")
	s.KeyFile = filepath.Join(dir, "server.key")

	caCert, caKey, err := newCA()
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := issue(caCert, caKey, []string{"127.0.0.1", "::1", "localhost"})
	if err != nil {
		return err
	}
	caKeyPEM, err := encodeKey(caKey)
	if err != nil {
		return err
	}
	// PostgreSQL refuses a key file that is not owned by the server user
	// with mode 0600 or less.
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{s.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o644},
		{s.CAKeyFile, caKeyPEM, 0o600},
		{s.CertFile, certPEM, 0o644},
		{s.KeyFile, keyPEM, 0o600},
	} {
		if err := s.writeFile(f.path, f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// IssueCert signs a new leaf certificate for hosts (IP addresses or DNS names;
// the first is also the subject's common name) with the test CA in caFile and
// caKeyFile, as written by Start with Options.TLS. The certificate is valid
// for both server and client authentication. It writes the PEM certificate and
// its key (mode 0600, owned by the caller) to new files in dir and returns
// their paths.
func IssueCert(caFile, caKeyFile string, hosts []string, dir string) (certFile, keyFile string, err error) {
	if len(hosts) == 0 {
		return "", "", errors.New("issuing certificate: no hosts")
	}
	caCert, caKey, err := loadCA(caFile, caKeyFile)
	if err != nil {
		return "", "", err
	}
	certPEM, keyPEM, err := issue(caCert, caKey, hosts)
	if err != nil {
		return "", "", err
	}
	cf, err := os.CreateTemp(dir, "leaf-*.crt")
	if err != nil {
		return "", "", fmt.Errorf("issuing certificate: %w", err)
	}
	certFile = cf.Name()
	keyFile = strings.TrimSuffix(certFile, ".crt") + ".key"
	_, err = cf.Write(certPEM)
	if cerr := cf.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = writeNew(keyFile, keyPEM, 0o600)
	}
	if err != nil {
		os.Remove(certFile)
		return "", "", fmt.Errorf("issuing certificate: %w", err)
	}
	return certFile, keyFile, nil
}

func newCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "lockguard test CA", Organization: []string{"lockguard tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	return cert, key, nil
}

// issue signs a leaf certificate for hosts and returns it and its key as PEM.
func issue(ca *x509.Certificate, caKey any, hosts []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	notAfter := now.Add(certLifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"lockguard tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func loadCA(caFile, caKeyFile string) (*x509.Certificate, any, error) {
	certPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("reading CA: no PEM certificate in %s", caFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA: %w", err)
	}
	keyPEM, err := os.ReadFile(caKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA key: %w", err)
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("reading CA key: no PKCS #8 PEM key in %s", caKeyFile)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA key: %w", err)
	}
	return cert, key, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return serial, nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
