package proxy

import "crypto/tls"

// ServerTLSConfig returns the client-facing TLS configuration: TLS 1.2 or
// newer, and for TLS 1.2 only AEAD cipher suites with forward secrecy.
func ServerTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos: []string{"postgresql"},
	}
}

// requireTLS reports whether a client must use TLS: RequireTLS, or a TLS
// configuration that demands a client certificate.
func (c *Config) requireTLS() bool {
	if c.RequireTLS {
		return true
	}
	return c.TLS != nil && clientCertRequired(c.TLS.ClientAuth)
}

func clientCertRequired(a tls.ClientAuthType) bool {
	return a == tls.RequireAnyClientCert || a == tls.RequireAndVerifyClientCert
}

// tlsRequiredError is the refusal of a client that did not use TLS where
// lockguard requires it. It names both the setting and the client's fix.
func tlsRequiredError(c *Config) *Error {
	e := &Error{Code: CodeInvalidAuthSpec,
		Message: "lockguard: TLS is required, and this connection is not encrypted",
		Detail:  "This lockguard accepts only TLS connections (client-tls: require); the client sent its startup message without asking for TLS (SSLRequest).",
		Hint:    "Connect with sslmode=require, or better sslmode=verify-full with the CA that signed lockguard's certificate.",
	}
	switch {
	case c.TLS == nil:
		e.Detail = "This lockguard requires TLS from clients but has no certificate to offer it with."
		e.Hint = "lockguard is misconfigured: give it tls-cert and tls-key, or set client-tls: allow."
	case clientCertRequired(c.TLS.ClientAuth):
		e.Detail = "This lockguard accepts only TLS connections with a client certificate signed by its tls-client-ca; the client sent its startup message without asking for TLS (SSLRequest)."
		e.Hint = "Connect with sslmode=require (or verify-full) and a client certificate: sslcert and sslkey."
	}
	return e
}
