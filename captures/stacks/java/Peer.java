// One TLS peer on Java's JSSE for the tlsinspect captures: a server that accepts one connection
// or a client that makes one, pinned to one protocol version, printing what happened as JSON
// lines on stdout (one object per line, key "event").
//
//   java Peer.java server --port P --protocol TLSv1.3 --auth need|want|none
//        --keystore server.p12 --truststore trust.p12 --password PW
//   java Peer.java client --port P --protocol TLSv1.2 [--keystore client.p12]
//        --truststore trust.p12 --password PW --sni NAME
//
// The client sends "ping\n", reads one line and closes; the server reads one line, answers
// "pong\n", waits for the client's close and closes. Key managers are single-entry: the client
// offers its one certificate whatever CA names the server asked for, so that a certificate from
// a foreign CA, or an expired one, reaches the server.

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.KeyManager;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedKeyManager;

public final class Peer {
    private static final int TIMEOUT_MS = 8000;

    public static void main(String[] args) throws Exception {
        Map<String, String> opt = new HashMap<>();
        for (int i = 1; i + 1 < args.length; i += 2) {
            opt.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        }
        String mode = args.length > 0 ? args[0] : "";
        emit("start", "mode", mode, "java", System.getProperty("java.version"));
        try {
            if (mode.equals("server")) {
                server(opt);
            } else if (mode.equals("client")) {
                client(opt);
            } else {
                throw new IllegalArgumentException("mode must be server or client");
            }
        } catch (Exception e) {
            emit("error", "stage", "setup", "exception", describe(e));
            System.exit(2);
        }
        emit("end");
    }

    // ----------------------------------------------------------------------------------------

    private static void server(Map<String, String> opt) throws Exception {
        SSLContext ctx = context(opt, true);
        int port = Integer.parseInt(opt.get("port"));
        String auth = opt.getOrDefault("auth", "none");
        try (SSLServerSocket listener = (SSLServerSocket) ctx.getServerSocketFactory()
                .createServerSocket(port, 8, InetAddress.getByName("127.0.0.1"))) {
            listener.setEnabledProtocols(new String[] {opt.get("protocol")});
            if (auth.equals("need")) {
                listener.setNeedClientAuth(true);
            } else if (auth.equals("want")) {
                listener.setWantClientAuth(true);
            }
            emit("listening", "port", port, "auth", auth, "protocol", opt.get("protocol"));
            try (SSLSocket s = (SSLSocket) listener.accept()) {
                s.setSoTimeout(TIMEOUT_MS);
                emit("accepted", "client_port", s.getPort());
                String stage = "handshake";
                try {
                    s.startHandshake();
                    handshakeDone(s.getSession());
                    stage = "read";
                    String line = readLine(s.getInputStream());
                    emit("read", "data", line);
                    if (line == null) {
                        return;
                    }
                    stage = "write";
                    s.getOutputStream().write("pong\n".getBytes(StandardCharsets.US_ASCII));
                    s.getOutputStream().flush();
                    emit("wrote", "data", "pong\n");
                    stage = "close";
                    awaitClose(s);
                } catch (Exception e) {
                    emit("error", "stage", stage, "exception", describe(e));
                }
            }
        }
    }

    private static void client(Map<String, String> opt) throws Exception {
        SSLContext ctx = context(opt, false);
        int port = Integer.parseInt(opt.get("port"));
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), TIMEOUT_MS);
            s.setSoTimeout(TIMEOUT_MS);
            emit("connected", "client_port", s.getLocalPort(), "server_port", port);
            SSLParameters params = s.getSSLParameters();
            params.setProtocols(new String[] {opt.get("protocol")});
            params.setServerNames(List.of(new SNIHostName(opt.get("sni"))));
            params.setEndpointIdentificationAlgorithm("HTTPS");
            s.setSSLParameters(params);
            String stage = "handshake";
            try {
                s.startHandshake();
                handshakeDone(s.getSession());
                stage = "write";
                s.getOutputStream().write("ping\n".getBytes(StandardCharsets.US_ASCII));
                s.getOutputStream().flush();
                emit("wrote", "data", "ping\n");
                stage = "read";
                String line = readLine(s.getInputStream());
                emit("read", "data", line);
                stage = "close";
                // TLS 1.3 half-close: send close_notify, then read the server's
                if (s.getSession().getProtocol().equals("TLSv1.3")) {
                    s.shutdownOutput();
                    emit("sent_close_notify");
                    awaitEof(s);
                }
            } catch (Exception e) {
                emit("error", "stage", stage, "exception", describe(e));
            }
        }
    }

    /** Read to the peer's close (close_notify or TCP FIN), then close our side. */
    private static void awaitClose(SSLSocket s) throws IOException {
        awaitEof(s);
        s.close();
        emit("closed");
    }

    private static void awaitEof(SSLSocket s) throws IOException {
        InputStream in = s.getInputStream();
        byte[] buf = new byte[256];
        int n;
        int extra = 0;
        while ((n = in.read(buf)) >= 0) {
            extra += n;
        }
        emit("peer_closed", "extra_bytes", extra);
    }

    private static void handshakeDone(SSLSession session) {
        List<Object> peer = new ArrayList<>();
        try {
            for (Certificate c : session.getPeerCertificates()) {
                peer.add(((X509Certificate) c).getSubjectX500Principal().getName());
            }
        } catch (SSLPeerUnverifiedException e) {
            peer = null;
        }
        List<Object> local = null;
        Certificate[] mine = session.getLocalCertificates();
        if (mine != null) {
            local = new ArrayList<>();
            for (Certificate c : mine) {
                local.add(((X509Certificate) c).getSubjectX500Principal().getName());
            }
        }
        emit("handshake", "protocol", session.getProtocol(), "cipher", session.getCipherSuite(),
                "peer_chain", peer, "local_chain", local);
    }

    private static String readLine(InputStream in) throws IOException {
        StringBuilder line = new StringBuilder();
        int c;
        while ((c = in.read()) >= 0) {
            line.append((char) c);
            if (c == '\n') {
                return line.toString();
            }
        }
        return line.length() == 0 ? null : line.toString();
    }

    // ----------------------------------------------------------------------------------------

    private static SSLContext context(Map<String, String> opt, boolean server) throws Exception {
        char[] password = opt.get("password").toCharArray();
        KeyManager[] kms = null;
        String keystore = opt.get("keystore");
        if (keystore != null && !keystore.isEmpty()) {
            kms = new KeyManager[] {new OneKey(load(keystore, password), password, server)};
        }
        TrustManagerFactory tmf =
                TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(load(opt.get("truststore"), password));
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kms, tmf.getTrustManagers(), null);
        return ctx;
    }

    private static KeyStore load(String path, char[] password) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(path)) {
            ks.load(in, password);
        }
        return ks;
    }

    /** The keystore's one private key entry, offered for every request of its key type. */
    private static final class OneKey extends X509ExtendedKeyManager {
        private final String alias;
        private final PrivateKey key;
        private final X509Certificate[] chain;
        private final boolean server;

        OneKey(KeyStore ks, char[] password, boolean server) throws Exception {
            String found = null;
            for (Enumeration<String> e = ks.aliases(); e.hasMoreElements(); ) {
                String a = e.nextElement();
                if (ks.isKeyEntry(a)) {
                    found = a;
                }
            }
            if (found == null) {
                throw new IllegalArgumentException("no key entry in keystore");
            }
            alias = found;
            key = (PrivateKey) ks.getKey(found, password);
            Certificate[] certs = ks.getCertificateChain(found);
            chain = new X509Certificate[certs.length];
            for (int i = 0; i < certs.length; i++) {
                chain[i] = (X509Certificate) certs[i];
            }
            this.server = server;
        }

        private String choose(String[] keyTypes, Principal[] issuers, String role) {
            for (String t : keyTypes) {
                if (t.equals(key.getAlgorithm())) {
                    List<Object> names = null;
                    if (issuers != null) {
                        names = new ArrayList<>();
                        for (Principal p : issuers) {
                            names.add(p.getName());
                        }
                    }
                    emit("key_manager", "role", role, "key_type", t, "alias", alias,
                            "ca_names", names);
                    return alias;
                }
            }
            return null;
        }

        @Override
        public String chooseClientAlias(String[] keyTypes, Principal[] issuers, Socket s) {
            return server ? null : choose(keyTypes, issuers, "client");
        }

        @Override
        public String chooseEngineClientAlias(String[] keyTypes, Principal[] issuers, SSLEngine e) {
            return server ? null : choose(keyTypes, issuers, "client");
        }

        @Override
        public String chooseServerAlias(String keyType, Principal[] issuers, Socket s) {
            return server && keyType.equals(key.getAlgorithm()) ? alias : null;
        }

        @Override
        public String chooseEngineServerAlias(String keyType, Principal[] issuers, SSLEngine e) {
            return server && keyType.equals(key.getAlgorithm()) ? alias : null;
        }

        @Override
        public String[] getClientAliases(String keyType, Principal[] issuers) {
            return server ? null : new String[] {alias};
        }

        @Override
        public String[] getServerAliases(String keyType, Principal[] issuers) {
            return server ? new String[] {alias} : null;
        }

        @Override
        public X509Certificate[] getCertificateChain(String a) {
            return alias.equals(a) ? chain.clone() : null;
        }

        @Override
        public PrivateKey getPrivateKey(String a) {
            return alias.equals(a) ? key : null;
        }
    }

    // ----------------------------------------------------------------------------------------
    // JSON lines

    private static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder(e.getClass().getName() + ": " + e.getMessage());
        for (Throwable c = e.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
            sb.append(" <- ").append(c.getClass().getName()).append(": ").append(c.getMessage());
        }
        return sb.toString();
    }

    private static synchronized void emit(String event, Object... kv) {
        StringBuilder sb = new StringBuilder("{\"event\":").append(json(event));
        for (int i = 0; i + 1 < kv.length; i += 2) {
            sb.append(',').append(json(kv[i])).append(':').append(json(kv[i + 1]));
        }
        System.out.println(sb.append('}'));
        System.out.flush();
    }

    private static String json(Object v) {
        if (v == null) {
            return "null";
        }
        if (v instanceof Number || v instanceof Boolean) {
            return v.toString();
        }
        if (v instanceof List<?> list) {
            StringBuilder sb = new StringBuilder("[");
            for (Object o : list) {
                sb.append(sb.length() > 1 ? "," : "").append(json(o));
            }
            return sb.append(']').toString();
        }
        StringBuilder sb = new StringBuilder("\"");
        for (char c : v.toString().toCharArray()) {
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20 || c > 0x7e) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append('"').toString();
    }
}
