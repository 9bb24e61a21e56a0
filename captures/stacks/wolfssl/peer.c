/*
 * One TLS peer on wolfSSL, for captures/record_wolfssl.py.
 *
 *   peer server PORT VERSION CAFILE --cert CHAIN --key KEY [--verify none|optional|require]
 *        [--pha] [--keylog FILE]
 *   peer client PORT VERSION CAFILE [--cert CHAIN --key KEY] [--sni NAME] [--pha]
 *        [--keylog FILE]
 *
 * VERSION is 1.2 or 1.3. The server accepts one connection on 127.0.0.1:PORT, reads "ping\n"
 * and answers "pong\n", then waits for the client's close_notify and answers it. With --pha
 * (TLS 1.3) it does not ask for a certificate in the handshake: after the ping it sends a
 * post-handshake CertificateRequest and the line "cert\n", reads the client's next line and
 * then answers "pong\n". The client sends "ping\n", reads one line (with --pha it then sends
 * "after\n" and reads a second line), sends close_notify and waits for the server's.
 *
 * Everything the program sees is printed on stdout, one event per line ("EVENT key=value..."),
 * for the recorder to judge. The Debian build of wolfSSL 5.5.4 has no key-log or secret
 * callback (HAVE_SECRET_CALLBACK is not set): for TLS 1.2 --keylog writes a CLIENT_RANDOM line
 * from the session's master secret; for TLS 1.3 nothing can be written.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 5

static struct {
    int server;
    int port;
    const char *version;
    const char *cafile;
    const char *cert;
    const char *key;
    const char *verify;
    const char *sni;
    const char *keylog;
    int pha;
} opt = {.verify = "none"};

static void usage(void) {
    fprintf(stderr, "usage: peer server|client PORT 1.2|1.3 CAFILE [options]\n");
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

static void report_error(const char *what, WOLFSSL *ssl, int rc) {
    char text[WOLFSSL_MAX_ERROR_SZ];
    int err = wolfSSL_get_error(ssl, rc);
    wolfSSL_ERR_error_string_n((unsigned long)err, text, sizeof text);
    event("%s error=%d reason=%s", what, err, text);
}

static void report_alerts(WOLFSSL *ssl) {
    WOLFSSL_ALERT_HISTORY h;
    if (wolfSSL_get_alert_history(ssl, &h) != WOLFSSL_SUCCESS)
        return;
    if (h.last_rx.code >= 0 && h.last_rx.level > 0)
        event("alert_received level=%d code=%d", h.last_rx.level, h.last_rx.code);
    if (h.last_tx.code >= 0 && h.last_tx.level > 0)
        event("alert_sent level=%d code=%d", h.last_tx.level, h.last_tx.code);
}

static void report_peer_cert(WOLFSSL *ssl) {
    WOLFSSL_X509 *cert = wolfSSL_get_peer_certificate(ssl);
    if (cert == NULL) {
        event("peer_cert none");
        return;
    }
    char cn[256] = "";
    wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(cert), NID_commonName, cn,
                                      sizeof cn);
    WOLFSSL_X509_CHAIN *chain = wolfSSL_get_peer_chain(ssl);
    int count = chain ? wolfSSL_get_chain_count(chain) : 0;
    event("peer_cert cn=%s chain=%d", cn, count);
    wolfSSL_X509_free(cert);
}

/* TLS 1.2 only: the master secret of the session and the client random. */
static void write_keylog(WOLFSSL *ssl) {
    if (opt.keylog == NULL || strcmp(wolfSSL_get_version(ssl), "TLSv1.2") != 0)
        return;
    unsigned char random[32], master[48];
    WOLFSSL_SESSION *session = wolfSSL_get_session(ssl);
    if (session == NULL || wolfSSL_get_client_random(ssl, random, sizeof random) != 32 ||
        wolfSSL_SESSION_get_master_key(session, master, sizeof master) != 48) {
        event("keylog unavailable");
        return;
    }
    FILE *fh = fopen(opt.keylog, "a");
    if (fh == NULL) {
        event("keylog error=%s", strerror(errno));
        return;
    }
    fputs("CLIENT_RANDOM ", fh);
    for (int i = 0; i < 32; i++)
        fprintf(fh, "%02x", random[i]);
    fputc(' ', fh);
    for (int i = 0; i < 48; i++)
        fprintf(fh, "%02x", master[i]);
    fputc('\n', fh);
    fclose(fh);
    event("keylog written=CLIENT_RANDOM");
}

/* Read up to and including a newline; 1 with the line in buf, 0 on close_notify, -1 else. */
static int read_line(WOLFSSL *ssl, char *buf, size_t size) {
    size_t used = 0;
    while (used + 1 < size) {
        int n = wolfSSL_read(ssl, buf + used, 1);
        if (n <= 0) {
            int err = wolfSSL_get_error(ssl, n);
            if (err == WOLFSSL_ERROR_ZERO_RETURN) {
                event("close_notify_received");
                return 0;
            }
            report_error("read_failed", ssl, n);
            report_alerts(ssl);
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

static int write_line(WOLFSSL *ssl, const char *line) {
    int len = (int)strlen(line);
    int n = wolfSSL_write(ssl, line, len);
    if (n != len) {
        report_error("write_failed", ssl, n);
        report_alerts(ssl);
        return -1;
    }
    event("wrote line=%.*s", len - 1, line);
    return 0;
}

/* After a failed handshake: half-close and read until the peer closes, so that late data of
 * the peer is not answered with a reset. */
static void drain(int fd) {
    char buf[4096];
    shutdown(fd, SHUT_WR);
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

static void set_timeout(int fd) {
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static WOLFSSL_CTX *make_ctx(void) {
    int v13 = strcmp(opt.version, "1.3") == 0;
    WOLFSSL_METHOD *method;
    if (opt.server)
        method = v13 ? wolfTLSv1_3_server_method() : wolfTLSv1_2_server_method();
    else
        method = v13 ? wolfTLSv1_3_client_method() : wolfTLSv1_2_client_method();
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(method);
    if (ctx == NULL) {
        event("fatal what=CTX_new");
        exit(1);
    }
    if (wolfSSL_CTX_load_verify_locations(ctx, opt.cafile, NULL) != WOLFSSL_SUCCESS) {
        event("fatal what=load_verify_locations");
        exit(1);
    }
    if (opt.cert != NULL) {
        if (wolfSSL_CTX_use_certificate_chain_file(ctx, opt.cert) != WOLFSSL_SUCCESS ||
            wolfSSL_CTX_use_PrivateKey_file(ctx, opt.key, WOLFSSL_FILETYPE_PEM) !=
                WOLFSSL_SUCCESS) {
            event("fatal what=load_cert_key");
            exit(1);
        }
    }
    if (opt.server) {
        int mode = WOLFSSL_VERIFY_NONE;
        if (strcmp(opt.verify, "optional") == 0)
            mode = WOLFSSL_VERIFY_PEER;
        else if (strcmp(opt.verify, "require") == 0)
            mode = WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        if (opt.pha)
            mode = WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT |
                   WOLFSSL_VERIFY_POST_HANDSHAKE;
        wolfSSL_CTX_set_verify(ctx, mode, NULL);
    } else {
        wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
    }
    return ctx;
}

static int run_server(WOLFSSL_CTX *ctx) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 4) != 0) {
        event("fatal what=listen error=%s", strerror(errno));
        return 1;
    }
    event("listening port=%d", opt.port);
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    int fd = accept(lfd, (struct sockaddr *)&peer, &plen);
    close(lfd);
    if (fd < 0) {
        event("fatal what=accept error=%s", strerror(errno));
        return 1;
    }
    set_timeout(fd);
    event("accepted client_port=%d", ntohs(peer.sin_port));
    WOLFSSL *ssl = wolfSSL_new(ctx);
    wolfSSL_set_fd(ssl, fd);
    int rc = wolfSSL_accept(ssl);
    if (rc != WOLFSSL_SUCCESS) {
        report_error("handshake_failed", ssl, rc);
        report_alerts(ssl);
        report_peer_cert(ssl);
        drain(fd);
        event("done");
        return 0;
    }
    event("handshake ok version=%s cipher=%s", wolfSSL_get_version(ssl),
          wolfSSL_get_cipher_name(ssl));
    report_peer_cert(ssl);
    write_keylog(ssl);
    char line[256];
    if (read_line(ssl, line, sizeof line) != 1)
        goto out;
    if (opt.pha) {
        rc = wolfSSL_request_certificate(ssl);
        if (rc != WOLFSSL_SUCCESS) {
            report_error("request_certificate_failed", ssl, rc);
            goto out;
        }
        event("certificate_requested");
        if (write_line(ssl, "cert\n") != 0 || read_line(ssl, line, sizeof line) != 1)
            goto out;
        report_peer_cert(ssl);
    }
    if (write_line(ssl, "pong\n") != 0)
        goto out;
    if (read_line(ssl, line, sizeof line) == 0) {
        rc = wolfSSL_shutdown(ssl);
        event("close_notify_sent rc=%d", rc);
    }
out:
    report_alerts(ssl);
    wolfSSL_free(ssl);
    close(fd);
    event("done");
    return 0;
}

static int run_client(WOLFSSL_CTX *ctx) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        event("fatal what=connect error=%s", strerror(errno));
        return 1;
    }
    set_timeout(fd);
    struct sockaddr_in me;
    socklen_t mlen = sizeof me;
    getsockname(fd, (struct sockaddr *)&me, &mlen);
    event("connected client_port=%d", ntohs(me.sin_port));
    WOLFSSL *ssl = wolfSSL_new(ctx);
    wolfSSL_set_fd(ssl, fd);
    if (opt.sni != NULL) {
        wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, opt.sni, (unsigned short)strlen(opt.sni));
        wolfSSL_check_domain_name(ssl, opt.sni);
    }
    if (opt.pha && wolfSSL_allow_post_handshake_auth(ssl) != 0) {
        event("fatal what=allow_post_handshake_auth");
        return 1;
    }
    int rc = wolfSSL_connect(ssl);
    if (rc != WOLFSSL_SUCCESS) {
        report_error("handshake_failed", ssl, rc);
        report_alerts(ssl);
        write_keylog(ssl);
        drain(fd);
        event("done");
        return 0;
    }
    event("handshake ok version=%s cipher=%s", wolfSSL_get_version(ssl),
          wolfSSL_get_cipher_name(ssl));
    write_keylog(ssl);
    char line[256];
    if (write_line(ssl, "ping\n") != 0 || read_line(ssl, line, sizeof line) != 1)
        goto out;
    if (opt.pha && (write_line(ssl, "after\n") != 0 || read_line(ssl, line, sizeof line) != 1))
        goto out;
    rc = wolfSSL_shutdown(ssl);
    event("close_notify_sent rc=%d", rc);
    if (rc == WOLFSSL_SHUTDOWN_NOT_DONE) {
        rc = wolfSSL_shutdown(ssl);
        if (rc == WOLFSSL_SUCCESS)
            event("close_notify_received");
        else
            report_error("shutdown", ssl, rc);
    }
out:
    report_alerts(ssl);
    wolfSSL_free(ssl);
    close(fd);
    event("done");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5)
        usage();
    if (strcmp(argv[1], "server") == 0)
        opt.server = 1;
    else if (strcmp(argv[1], "client") != 0)
        usage();
    opt.port = atoi(argv[2]);
    opt.version = argv[3];
    opt.cafile = argv[4];
    for (int i = 5; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--pha") == 0)
            opt.pha = 1;
        else if (i + 1 >= argc)
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
    wolfSSL_Init();
    WOLFSSL_CTX *ctx = make_ctx();
    event("library version=%s", wolfSSL_lib_version());
    int rc = opt.server ? run_server(ctx) : run_client(ctx);
    wolfSSL_CTX_free(ctx);
    wolfSSL_Cleanup();
    return rc;
}
