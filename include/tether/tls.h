/*
 * tls.h - TLS settings for servers and clients (OpenSSL underneath).
 *
 * One struct serves both sides; tether_server_config and
 * tether_client_config each hold one as their `tls` field.  All zero
 * means "no TLS".  Files are PEM and are read when the server or client
 * is created (a bad file is an error then, not at the first connection);
 * strings are copied.
 *
 * Server: TLS is on when cert_file is set.  One port serves TLS and, only
 * with allow_plaintext, plaintext: the server tells a TLS ClientHello from
 * the connection's first bytes, so every codec (native, gob, jsonrpc)
 * works over either.  Without allow_plaintext a plaintext connection is
 * told "rpc: this server requires TLS" (in tether's framing) and closed.
 *
 * Client: TLS is on when enable is set.  The server's certificate is
 * verified against ca_file (or the system's store) and against
 * server_name, or else the host of the address (an IP address must be in
 * the certificate's IP SANs).  A failed handshake makes the connect fail
 * with TETHER_ETLS; the reason (OpenSSL's, e.g. "certificate verify
 * failed: certificate has expired") is logged at WARN.
 */
#ifndef TETHER_TLS_H
#define TETHER_TLS_H

#ifdef __cplusplus
extern "C" {
#endif

/* TLS protocol versions for tether_tls_config.min_version. */
#define TETHER_TLS_1_2 0x0303
#define TETHER_TLS_1_3 0x0304

typedef struct tether_tls_config {
    /* Client only: speak TLS (0: plaintext, the other fields are ignored). */
    int enable;
    /* Certificate chain (leaf first) and its private key.  Server:
     * required for TLS.  Client: optional, sent when the server asks for
     * one (mTLS).  NULL: none. */
    const char *cert_file;
    const char *key_file;
    /* CA certificates.  Client: the ones the server's certificate must
     * chain to (NULL: the system's default store).  Server: the ones a
     * client certificate must chain to (NULL: client certificates are
     * neither asked for nor verified). */
    const char *ca_file;
    /* Server only: refuse a client that sends no certificate signed by
     * ca_file (mTLS; needs ca_file).  Default 0: a client certificate is
     * asked for when ca_file is set, verified if sent, optional. */
    int require_client_cert;
    /* Server only: also serve plaintext connections on the TLS port (for
     * migrations).  Default 0: they are refused. */
    int allow_plaintext;
    /* Client only: the name the server's certificate must carry (and the
     * SNI sent).  NULL: the host part of the address. */
    const char *server_name;
    /* Lowest version accepted: TETHER_TLS_1_2 (the default, 0) or
     * TETHER_TLS_1_3.  TLS 1.3 is used whenever both sides support it. */
    int min_version;
} tether_tls_config;

#ifdef __cplusplus
}
#endif
#endif /* TETHER_TLS_H */
