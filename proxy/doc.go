// Package proxy is lockguard's wire: it accepts PostgreSQL client connections,
// relays each to its own upstream connection (session mode), and tracks the
// session state that guard decisions need. It knows nothing about SQL.
//
// Bytes are relayed unchanged. Each direction is framed by the 5-byte message
// header; only messages that carry SQL or change state are read whole
// (Query, Parse, Bind, Close, Sync … from the client; ReadyForQuery,
// ErrorResponse and the extended-protocol acknowledgements from the server).
// Whatever one Read returned leaves in one Write, and the relay path allocates
// nothing per message.
//
// Startup and one query:
//
//	client                     lockguard                      PostgreSQL
//	  | SSLRequest               |                                |
//	  |------------------------->|                                |
//	  |<-------------------- 'S' | (TLS with the configured cert) |
//	  | StartupMessage           | dial, SSLRequest per sslmode   |
//	  |------------------------->|------------------------------->|
//	  |                          |     AuthenticationSASL         |
//	  |<-------------------------|<-------------------------------|
//	  |   (SCRAM-SHA-256-PLUS removed: TLS ends at the proxy)     |
//	  | SASLInitialResponse …    |                                |
//	  |------------------------->|------------------------------->|
//	  |  AuthenticationOk, ParameterStatus…, BackendKeyData (kept |
//	  |  for cancels), ReadyForQuery                              |
//	  |<-------------------------|<-------------------------------|
//	  | Query                    | count sync point               |
//	  |------------------------->|------------------------------->|
//	  |  RowDescription, DataRow…, CommandComplete, ReadyForQuery |
//	  |<-------------------------|<-------------------------------|
//	  |                          | note transaction status        |
//
// A CancelRequest arrives on a new connection and is forwarded unchanged: the
// key is PostgreSQL's own, so any lockguard replica can forward it.
package proxy
