/*
 * One TLS 1.2 peer on Mbed TLS 2.28, for captures/record_mbedtls.py.
 *
 *   peer server PORT 1.2 CAFILE --cert CHAIN --key KEY [--verify none|optional|require]
 *        [--keylog FILE]
 *   peer client PORT 1.2 CAFILE [--cert CHAIN --key KEY] [--sni NAME] [--keylog FILE]
 *
 * Mbed TLS 2.28 has no TLS 1.3, so VERSION must be 1.2. The server accepts one connection on
 * 127.0.0.1:PORT, reads "ping\n", answers "pong\n", then waits for the client's close_notify
 * and answers it. The client sends "ping\n", reads one line, sends close_notify and waits for
 * the server's.
 *
 * Everything the program sees is printed on stdout, one event per line ("EVENT key=value..."),
 * for the recorder to judge. --keylog appends a CLIENT_RANDOM line (NSS key-log format) from
 * the key-export callback (mbedtls_ssl_conf_export_keys_ext_cb), which gets the master secret
 * and both randoms as soon as the master secret is derived.
 */
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 5000

static struct {
    int server;
    const char *port;
    const char *cafile;
    const char *cert;
    const char *key;
    const char *verify;
    const char *sni;
    const char *keylog;
} opt = {.verify = "none"};

/* The client leaf the server's verify callback saw last, and its verification flags. */
static char offered_cn[256];
static uint32_t offered_flags;
static int offered;

static void usage(void) {
    fprintf(stderr, "usage: peer server|client PORT 1.2 CAFILE [options]\n");
    exit(2);
}

static void event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void event(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("EVENT ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

static void report_error(const char *what, mbedtls_ssl_context *ssl, int ret) {
    char text[200];
    mbedtls_strerror(ret, text, sizeof text);
    event("%s error=-0x%04x reason=%s", what, (unsigned)-ret, text);
    if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE)
        event("alert_received level=%d code=%d", ssl->in_msg[0], ssl->in_msg[1]);
}

static void cn_of(const mbedtls_x509_crt *crt, char *out, size_t size) {
    out[0] = '\0';
    for (const mbedtls_x509_name *n = &crt->subject; n != NULL; n = n->next) {
        if (n->oid.p != NULL && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
            snprintf(out, size, "%.*s", (int)n->val.len, (const char *)n->val.p);
            return;
        }
    }
}

static int verify_cb(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
    (void)p;
    if (depth == 0 && opt.server) {
        cn_of(crt, offered_cn, sizeof offered_cn);
        offered_flags = *flags;
        offered = 1;
    }
    return 0;
}

static void report_peer_cert(mbedtls_ssl_context *ssl, int handshake_ok) {
    const mbedtls_x509_crt *crt = handshake_ok ? mbedtls_ssl_get_peer_cert(ssl) : NULL;
    if (crt != NULL) {
        char cn[256];
        int count = 0;
        cn_of(crt, cn, sizeof cn);
        for (const mbedtls_x509_crt *c = crt; c != NULL && c->raw.len > 0; c = c->next)
            count++;
        event("peer_cert cn=%s chain=%d flags=0x%x", cn, count,
              (unsigned)mbedtls_ssl_get_verify_result(ssl));
    } else if (!handshake_ok && offered) {
        event("peer_cert cn=%s flags=0x%x", offered_cn, (unsigned)offered_flags);
    } else {
        event("peer_cert none");
    }
}

static int export_keys(void *p, const unsigned char *ms, const unsigned char *kb, size_t maclen,
                       size_t keylen, size_t ivlen, const unsigned char client_random[32],
                       const unsigned char server_random[32], mbedtls_tls_prf_types prf) {
    (void)p, (void)kb, (void)maclen, (void)keylen, (void)ivlen, (void)server_random, (void)prf;
    if (opt.keylog == NULL)
        return 0;
    FILE *fh = fopen(opt.keylog, "a");
    if (fh == NULL) {
        event("keylog error=%s", strerror(errno));
        return 0;
    }
    fputs("CLIENT_RANDOM ", fh);
    for (int i = 0; i < 32; i++)
        fprintf(fh, "%02x", client_random[i]);
    fputc(' ', fh);
    for (int i = 0; i < 48; i++)
        fprintf(fh, "%02x", ms[i]);
    fputc('\n', fh);
    fclose(fh);
    event("keylog written=CLIENT_RANDOM");
    return 0;
}

/* Read up to and including a newline; 1 with the line in buf, 0 on close_notify or end of
 * the connection, -1 on an error. */
static int read_line(mbedtls_ssl_context *ssl, char *buf, size_t size) {
    size_t used = 0;
    while (used + 1 < size) {
        int n = mbedtls_ssl_read(ssl, (unsigned char *)buf + used, 1);
        if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue;
        if (n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
            event("close_notify_received");
            return 0;
        }
        if (n == 0) {
            event("eof");
            return 0;
        }
        if (n < 0) {
            report_error("read_failed", ssl, n);
            return -1;
        }
        used += (size_t)n;
        if (buf[used - 1] == '\n')
            break;
    }
    buf[used] = '\0';
    if (used > 0 && buf[used - 1] == '\n')
        buf[used - 1] = '\0';
    event("read line=%s", buf);
    return 1;
}

static int write_line(mbedtls_ssl_context *ssl, const char *line) {
    size_t len = strlen(line);
    int n;
    while ((n = mbedtls_ssl_write(ssl, (const unsigned char *)line, len)) ==
           MBEDTLS_ERR_SSL_WANT_WRITE) {
    }
    if (n != (int)len) {
        report_error("write_failed", ssl, n);
        return -1;
    }
    event("wrote line=%.*s", (int)len - 1, line);
    return 0;
}

static void close_notify(mbedtls_ssl_context *ssl) {
    int ret;
    while ((ret = mbedtls_ssl_close_notify(ssl)) == MBEDTLS_ERR_SSL_WANT_WRITE) {
    }
    if (ret == 0)
        event("close_notify_sent");
    else
        report_error("close_notify_failed", ssl, ret);
}

/* After a failed handshake: half-close and read until the peer closes, so that late data of
 * the peer is not answered with a reset. */
static void drain(int fd) {
    char buf[4096];
    shutdown(fd, SHUT_WR);
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

static void fatal(const char *what, int ret) {
    char text[200];
    mbedtls_strerror(ret, text, sizeof text);
    event("fatal what=%s error=-0x%04x reason=%s", what, (unsigned)-ret, text);
    exit(1);
}

static int handshake(mbedtls_ssl_context *ssl) {
    int ret;
    while ((ret = mbedtls_ssl_handshake(ssl)) != 0) {
        if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE)
            return ret;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5)
        usage();
    if (strcmp(argv[1], "server") == 0)
        opt.server = 1;
    else if (strcmp(argv[1], "client") != 0)
        usage();
    opt.port = argv[2];
    if (strcmp(argv[3], "1.2") != 0) {
        event("fatal what=version reason=Mbed TLS 2.28 speaks TLS 1.2 only");
        return 2;
    }
    opt.cafile = argv[4];
    for (int i = 5; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        else if (strcmp(a, "--cert") == 0)
            opt.cert = argv[++i];
        else if (strcmp(a, "--key") == 0)
            opt.key = argv[++i];
        else if (strcmp(a, "--verify") == 0)
            opt.verify = argv[++i];
        else if (strcmp(a, "--sni") == 0)
            opt.sni = argv[++i];
        else if (strcmp(a, "--keylog") == 0)
            opt.keylog = argv[++i];
        else
            usage();
    }
    char version[64];
    mbedtls_version_get_string_full(version);
    event("library version=%s", version);

    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca, own;
    mbedtls_pk_context key;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    mbedtls_net_context listen_fd, fd;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_x509_crt_init(&ca);
    mbedtls_x509_crt_init(&own);
    mbedtls_pk_init(&key);
    mbedtls_ssl_config_init(&conf);
    mbedtls_ssl_init(&ssl);
    mbedtls_net_init(&listen_fd);
    mbedtls_net_init(&fd);

    int ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                    (const unsigned char *)"peer", 4);
    if (ret != 0)
        fatal("ctr_drbg_seed", ret);
    if ((ret = mbedtls_x509_crt_parse_file(&ca, opt.cafile)) != 0)
        fatal("ca", ret);
    if (opt.cert != NULL) {
        if ((ret = mbedtls_x509_crt_parse_file(&own, opt.cert)) != 0)
            fatal("cert", ret);
        if ((ret = mbedtls_pk_parse_keyfile(&key, opt.key, NULL)) != 0)
            fatal("key", ret);
    }
    ret = mbedtls_ssl_config_defaults(&conf,
                                      opt.server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
                                      MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0)
        fatal("config_defaults", ret);
    mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
    mbedtls_ssl_conf_read_timeout(&conf, IO_TIMEOUT_MS);
    mbedtls_ssl_conf_export_keys_ext_cb(&conf, export_keys, NULL);
    mbedtls_ssl_conf_verify(&conf, verify_cb, NULL);
    if (opt.cert != NULL && (ret = mbedtls_ssl_conf_own_cert(&conf, &own, &key)) != 0)
        fatal("own_cert", ret);
    int authmode = MBEDTLS_SSL_VERIFY_REQUIRED;
    if (opt.server) {
        if (strcmp(opt.verify, "none") == 0)
            authmode = MBEDTLS_SSL_VERIFY_NONE;
        else if (strcmp(opt.verify, "optional") == 0)
            authmode = MBEDTLS_SSL_VERIFY_OPTIONAL;
    }
    mbedtls_ssl_conf_authmode(&conf, authmode);
    if ((ret = mbedtls_ssl_setup(&ssl, &conf)) != 0)
        fatal("ssl_setup", ret);

    int client_port = 0;
    if (opt.server) {
        if ((ret = mbedtls_net_bind(&listen_fd, "127.0.0.1", opt.port, MBEDTLS_NET_PROTO_TCP)))
            fatal("bind", ret);
        event("listening port=%s", opt.port);
        if ((ret = mbedtls_net_accept(&listen_fd, &fd, NULL, 0, NULL)) != 0)
            fatal("accept", ret);
        mbedtls_net_free(&listen_fd);
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        getpeername(fd.fd, (struct sockaddr *)&peer, &plen);
        client_port = ntohs(peer.sin_port);
        event("accepted client_port=%d", client_port);
    } else {
        if ((ret = mbedtls_net_connect(&fd, "127.0.0.1", opt.port, MBEDTLS_NET_PROTO_TCP)))
            fatal("connect", ret);
        struct sockaddr_in me;
        socklen_t mlen = sizeof me;
        getsockname(fd.fd, (struct sockaddr *)&me, &mlen);
        client_port = ntohs(me.sin_port);
        event("connected client_port=%d", client_port);
        if (opt.sni != NULL && (ret = mbedtls_ssl_set_hostname(&ssl, opt.sni)) != 0)
            fatal("set_hostname", ret);
    }
    mbedtls_ssl_set_bio(&ssl, &fd, mbedtls_net_send, NULL, mbedtls_net_recv_timeout);

    char line[256];
    if ((ret = handshake(&ssl)) != 0) {
        report_error("handshake_failed", &ssl, ret);
        if (opt.server)
            report_peer_cert(&ssl, 0);
        drain(fd.fd);
        goto done;
    }
    event("handshake ok version=%s cipher=%s", mbedtls_ssl_get_version(&ssl),
          mbedtls_ssl_get_ciphersuite(&ssl));
    if (opt.server) {
        report_peer_cert(&ssl, 1);
        if (read_line(&ssl, line, sizeof line) == 1 && write_line(&ssl, "pong\n") == 0 &&
            read_line(&ssl, line, sizeof line) == 0)
            close_notify(&ssl);
    } else if (write_line(&ssl, "ping\n") == 0 && read_line(&ssl, line, sizeof line) == 1) {
        close_notify(&ssl);
        while (read_line(&ssl, line, sizeof line) == 1) {
        }
    }
done:
    mbedtls_net_free(&fd);
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_pk_free(&key);
    mbedtls_x509_crt_free(&own);
    mbedtls_x509_crt_free(&ca);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    event("done");
    return 0;
}
