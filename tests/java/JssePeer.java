// The JVM as the peer of our sockets and TLS: java.net and JSSE (Java's own TLS stack), driven
// by tests/tests/tls_jsse_interop.rs and tests/tests/jvm_plain_peers.rs. Written for this
// repository; needs a JDK 11 or later (tested with OpenJDK 17).
//
// Usage: java -cp DIR JssePeer MODE ARGS... where MODE is
//   plain-client PORT               the seed's line protocol against our server
//   plain-server                    a ServerSocket that answers lines, for our client
//   tls-client CA CHAIN KEY OTHER-CA STEP...
//                                   JSSE client steps (see `clientStep`), each a connection
//   tls-server CA CHAIN KEY STEP... JSSE server steps (see `serverStep`), one accept each
//
// Every result is one line on stdout, starting with a word the tests look for; text that
// crosses the wire is printed escaped (see `esc`). A step that fails prints `FAILED` with the
// exception's class and message, and the program goes on with the next step.

import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;
import java.security.*;
import java.security.cert.*;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.*;
import javax.net.ssl.*;

public class JssePeer {
    static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    /** `s` with CR, LF and backslash escaped, so one printed line shows it all. */
    static String esc(String s) {
        return s.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n");
    }

    static List<byte[]> pemBlocks(String path, String kind) throws IOException {
        String text = new String(java.nio.file.Files.readAllBytes(java.nio.file.Paths.get(path)),
                StandardCharsets.US_ASCII);
        List<byte[]> blocks = new ArrayList<>();
        String begin = "-----BEGIN " + kind + "-----";
        String end = "-----END " + kind + "-----";
        int at = 0;
        while ((at = text.indexOf(begin, at)) >= 0) {
            int stop = text.indexOf(end, at);
            String body = text.substring(at + begin.length(), stop).replaceAll("\\s", "");
            blocks.add(Base64.getDecoder().decode(body));
            at = stop + end.length();
        }
        return blocks;
    }

    static X509Certificate[] certs(String path) throws Exception {
        CertificateFactory factory = CertificateFactory.getInstance("X.509");
        List<X509Certificate> list = new ArrayList<>();
        for (byte[] der : pemBlocks(path, "CERTIFICATE")) {
            list.add((X509Certificate) factory.generateCertificate(new ByteArrayInputStream(der)));
        }
        return list.toArray(new X509Certificate[0]);
    }

    /** An SSLContext trusting the CA in `ca` (none: "-"), with the chain and key in PKCS#12. */
    static SSLContext context(String ca, String chain, String key) throws Exception {
        KeyStore trusted = KeyStore.getInstance("PKCS12");
        trusted.load(null, null);
        if (!ca.equals("-")) {
            int i = 0;
            for (X509Certificate c : certs(ca)) {
                trusted.setCertificateEntry("ca" + i++, c);
            }
        }
        TrustManagerFactory tmf =
                TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trusted);
        TrustManager[] trust = tmf.getTrustManagers();
        KeyManager[] keys = null;
        if (!chain.equals("-")) {
            byte[] pkcs8 = pemBlocks(key, "PRIVATE KEY").get(0);
            PrivateKey privateKey =
                    KeyFactory.getInstance("EC").generatePrivate(new PKCS8EncodedKeySpec(pkcs8));
            KeyStore store = KeyStore.getInstance("PKCS12");
            store.load(null, null);
            store.setKeyEntry("me", privateKey, "pw".toCharArray(), certs(chain));
            KeyManagerFactory kmf =
                    KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(store, "pw".toCharArray());
            keys = kmf.getKeyManagers();
        }
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(keys, trust, null);
        return context;
    }

    static String describe(SSLSocket tls) {
        SSLSession s = tls.getSession();
        String alpn = tls.getApplicationProtocol();
        String peer;
        try {
            peer = String.valueOf(s.getPeerCertificates().length);
        } catch (SSLPeerUnverifiedException e) {
            peer = "0";
        }
        return "SESSION " + s.getProtocol() + " " + s.getCipherSuite() + " alpn="
                + (alpn == null || alpn.isEmpty() ? "-" : alpn) + " peer-certificates=" + peer;
    }

    /** A line of `len` letters, different for each `seed` (the tests make the same ones). */
    static String textLine(int seed, int len) {
        StringBuilder b = new StringBuilder(len);
        for (int i = 0; i < len; i++) {
            b.append((char) ('a' + ((i * 7 + seed * 3) % 26)));
        }
        return b.toString();
    }

    /** The byte at `i` of a bulk transfer: not periodic at any record or key-update size. */
    static byte bulkByte(long i) {
        return (byte) ((i * 31 + (i >>> 8) * 7 + (i >>> 16)) & 0xff);
    }

    /** Writes `total` bytes of the bulk pattern, then flushes. */
    static void writeBulk(OutputStream out, long total) throws IOException {
        writeBulk(out, total, null);
    }

    /**
     * As `writeBulk(out, total)`; with `echoed`, the bytes of the answer read so far, each write
     * waits until the answer is at most 64 KiB behind.
     */
    static void writeBulk(OutputStream out, long total, java.util.concurrent.atomic.AtomicLong echoed)
            throws IOException {
        byte[] chunk = new byte[7001];
        long sent = 0;
        while (sent < total) {
            while (echoed != null && sent - echoed.get() > 65536) {
                try {
                    Thread.sleep(1);
                } catch (InterruptedException e) {
                    throw new InterruptedIOException("paced write interrupted");
                }
            }
            int n = (int) Math.min(chunk.length, total - sent);
            for (int i = 0; i < n; i++) {
                chunk[i] = bulkByte(sent + i);
            }
            out.write(chunk, 0, n);
            sent += n;
        }
        out.flush();
    }

    /** Reads to the end, checking the bulk pattern: `received=N first-bad=I` (-1: none). */
    static String readBulk(InputStream in) throws IOException {
        return readBulk(in, Long.MAX_VALUE, null);
    }

    /**
     * As `readBulk(in)`, but stops once `limit` bytes were read, and counts them in `progress`
     * (when given) as they arrive.
     */
    static String readBulk(InputStream in, long limit, java.util.concurrent.atomic.AtomicLong progress)
            throws IOException {
        byte[] buffer = new byte[9000];
        long received = 0;
        long firstBad = -1;
        int n;
        while (received < limit
                && (n = in.read(buffer, 0, (int) Math.min(buffer.length, limit - received))) >= 0) {
            for (int i = 0; i < n; i++) {
                if (firstBad < 0 && buffer[i] != bulkByte(received + i)) {
                    firstBad = received + i;
                }
            }
            received += n;
            if (progress != null) {
                progress.set(received);
            }
        }
        return "received=" + received + " first-bad=" + firstBad;
    }

    static BufferedReader reader(Socket s) throws IOException {
        return new BufferedReader(
                new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
    }

    static void write(Socket s, String text) throws IOException {
        OutputStream out = s.getOutputStream();
        out.write(text.getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    /** Reads lines to the end, printing each as `AFTER`, then `EOF`, or `READ-FAILED`. */
    static void readToEnd(BufferedReader in) {
        try {
            String line;
            while ((line = in.readLine()) != null) {
                say("AFTER " + esc(line));
            }
            say("EOF");
        } catch (IOException e) {
            say("READ-FAILED " + e.getClass().getName() + ": " + e.getMessage());
        }
    }

    // -----------------------------------------------------------------------------------------
    // Plain TCP.
    // -----------------------------------------------------------------------------------------

    /** Against the seed's protocol (greeting, `Hello, NAME!` per line, end at our end). */
    static void plainClient(int port) throws Exception {
        try (Socket s = new Socket("127.0.0.1", port)) {
            BufferedReader in = reader(s);
            say("GREETING " + esc(in.readLine()));
            // CRLF, LF, and a lone CR inside a line (part of it for our server; a line end
            // for Java's readLine, which splits the answer in two).
            write(s, "crlf\r\nlf\nlone\rcr\n");
            for (int i = 0; i < 4; i++) {
                say("LINE " + esc(in.readLine()));
            }
            // PrintWriter.println ends lines with line.separator (LF here).
            PrintWriter w = new PrintWriter(new OutputStreamWriter(s.getOutputStream(),
                    StandardCharsets.UTF_8), true);
            w.println("println");
            say("LINE " + esc(in.readLine()));
            // A last line without an end, then our half-close: the server takes the
            // unterminated line at the end of the stream, answers it and ends too.
            write(s, "unterminated");
            s.shutdownOutput();
            say("HALF-CLOSED");
            readToEnd(in);
        }
    }

    /** Answers each line with `Hello, LINE!` until our client's end, then says `Bye`. */
    static void plainServer() throws Exception {
        try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            say("LISTENING " + server.getLocalPort());
            try (Socket s = server.accept()) {
                BufferedReader in = reader(s);
                PrintWriter w = new PrintWriter(new OutputStreamWriter(s.getOutputStream(),
                        StandardCharsets.UTF_8), true);
                String line;
                int n = 0;
                while ((line = in.readLine()) != null) {
                    say("GOT " + esc(line));
                    w.println("Hello, " + line + "!");
                    n++;
                }
                say("CLIENT-ENDED");
                w.print("Bye after " + n + " lines\r\n");
                w.flush();
            }
            say("CLOSED");
        }
    }

    // -----------------------------------------------------------------------------------------
    // TLS, JSSE as the client.
    // -----------------------------------------------------------------------------------------

    static SSLSocket connect(SSLContext context, int port, String protocol, boolean alpn)
            throws IOException {
        Socket raw = new Socket("127.0.0.1", port);
        return layer(context, raw, port, protocol, alpn);
    }

    static SSLSocket layer(SSLContext context, Socket raw, int port, String protocol,
            boolean alpn) throws IOException {
        SSLSocket tls = (SSLSocket) context.getSocketFactory().createSocket(raw, "localhost",
                port, true);
        SSLParameters p = tls.getSSLParameters();
        p.setProtocols(new String[] {protocol});
        p.setEndpointIdentificationAlgorithm("HTTPS");
        // JSSE sends SNI only for names with a dot: `localhost` must be given explicitly.
        p.setServerNames(List.of(new SNIHostName("localhost")));
        if (alpn) {
            p.setApplicationProtocols(new String[] {"h2", "http/1.1"});
        }
        tls.setSSLParameters(p);
        return tls;
    }

    /**
     * One client step, `NAME/PORT/PROTOCOL[/flag...]` (flags: `alpn`, `cert`, `untrusted`: trust
     * another CA only):
     * <ul>
     * <li>`talk`: two lines (one of 20 000 bytes), their answers, then `shutdownOutput`
     *     (close_notify) and the lines that still come;
     * <li>`resume`: two connections with the same context, each with one line; prints
     *     whether the second session has the first one's ID (`RESUMED true`: a resumed TLS
     *     1.2 session; JSSE gives a resumed TLS 1.3 session an ID of its own);
     * <li>`bulk`: BYTES (the flag) written while the answer is read and compared, then
     *     `shutdownOutput` and the rest read (none expected);
     * <li>`flood`: `shutdownOutput` at once, then BYTES (the flag) read and compared;
     * <li>`renegotiate`: a line, then a renegotiation, then a line;
     * <li>`cut`: a line, then the TCP connection closed without close_notify;
     * <li>`close`: a line, its answer, then `close()` (TLS 1.3: `user_canceled`, then
     *     close_notify, as the input is still open);
     * <li>`late`: a line, its answer, our end (our server half-closes), then a line written
     *     after it and `shutdownOutput`;
     * <li>`starttls`: plain lines, `STARTTLS`, then TLS on the same connection.
     * </ul>
     */
    static void clientStep(String ca, String chain, String key, String step) throws Exception {
        String[] parts = step.split("/");
        String name = parts[0];
        int port = Integer.parseInt(parts[1]);
        String protocol = parts[2];
        Set<String> flags = new HashSet<>(Arrays.asList(parts).subList(3, parts.length));
        SSLContext context = context(flags.contains("untrusted") ? otherCa : ca,
                flags.contains("cert") ? chain : "-", key);
        boolean alpn = flags.contains("alpn");
        say("STEP " + step);
        try {
            switch (name) {
                case "talk": {
                    SSLSocket tls = connect(context, port, protocol, alpn);
                    tls.startHandshake();
                    say(describe(tls));
                    BufferedReader in = reader(tls);
                    String longLine = textLine(1, 20000);
                    write(tls, "Hello, rustls\n" + longLine + "\n");
                    say("ANSWER " + esc(in.readLine()));
                    say("LONG " + ("Hello, " + longLine + "!").equals(in.readLine()));
                    tls.shutdownOutput();
                    say("HALF-CLOSED");
                    readToEnd(in);
                    tls.close();
                    break;
                }
                case "resume": {
                    byte[] first = null;
                    for (int round = 0; round < 2; round++) {
                        SSLSocket tls = connect(context, port, protocol, alpn);
                        BufferedReader in = reader(tls);
                        write(tls, "round " + round + "\n");
                        say("ANSWER " + esc(in.readLine()));
                        SSLSession s = tls.getSession();
                        if (round == 0) {
                            first = s.getId();
                        } else {
                            say("RESUMED " + Arrays.equals(first, s.getId()));
                        }
                        tls.close();
                    }
                    break;
                }
                case "bulk": {
                    long total = Long.parseLong(parts[3]);
                    SSLSocket tls = connect(context, port, protocol, alpn);
                    tls.startHandshake();
                    say(describe(tls));
                    java.util.concurrent.atomic.AtomicLong echoed =
                            new java.util.concurrent.atomic.AtomicLong();
                    Thread writer = new Thread(() -> {
                        try {
                            writeBulk(tls.getOutputStream(), total, echoed);
                        } catch (IOException e) {
                            say("WRITE-FAILED " + e);
                        }
                    });
                    writer.start();
                    // The whole echo is read before the half-close: at a key limit, JSSE's
                    // reader checks that its output is open, then starts a KeyUpdate, which
                    // fails the read ("Socket has been closed or broken") when another thread
                    // half-closed in between (JSSE's own race, seen 1 run in 5). The writes
                    // are paced so that the echo is read close behind them: once JSSE writes
                    // no more, it asks for a KeyUpdate at each 4 KiB it reads, and rustls ends
                    // a session after 32 such requests with no data between them
                    // (TooManyKeyUpdateRequests, its guard against a peer that floods them).
                    String read = readBulk(tls.getInputStream(), total, echoed);
                    writer.join();
                    tls.shutdownOutput();
                    String rest = readBulk(tls.getInputStream());
                    say("BULK " + read
                            + (rest.equals("received=0 first-bad=-1") ? "" : " then " + rest));
                    tls.close();
                    break;
                }
                case "flood": {
                    long total = Long.parseLong(parts[3]);
                    SSLSocket tls = connect(context, port, protocol, alpn);
                    tls.startHandshake();
                    tls.shutdownOutput();
                    say("HALF-CLOSED");
                    say("FLOOD " + readBulk(tls.getInputStream()));
                    tls.close();
                    break;
                }
                case "renegotiate": {
                    SSLSocket tls = connect(context, port, protocol, alpn);
                    BufferedReader in = reader(tls);
                    write(tls, "before\n");
                    say("ANSWER " + esc(in.readLine()));
                    try {
                        tls.startHandshake();
                        say("RENEGOTIATION-STARTED");
                        write(tls, "after\n");
                        say("ANSWER " + esc(in.readLine()));
                    } catch (IOException e) {
                        say("RENEGOTIATION-FAILED " + e.getClass().getName() + ": "
                                + e.getMessage());
                    }
                    tls.close();
                    break;
                }
                case "close": {
                    SSLSocket tls = connect(context, port, protocol, alpn);
                    BufferedReader in = reader(tls);
                    write(tls, "closing\n");
                    say("ANSWER " + esc(in.readLine()));
                    tls.close();
                    say("CLOSED");
                    break;
                }
                case "late": {
                    SSLSocket tls = connect(context, port, protocol, alpn);
                    BufferedReader in = reader(tls);
                    write(tls, "first\n");
                    say("ANSWER " + esc(in.readLine()));
                    say("READ " + in.readLine());
                    try {
                        write(tls, "late\n");
                        tls.shutdownOutput();
                        say("LATE-WRITTEN");
                    } catch (IOException e) {
                        say("LATE-FAILED " + e.getClass().getName() + ": " + e.getMessage());
                    }
                    tls.close();
                    break;
                }
                case "cut": {
                    Socket raw = new Socket("127.0.0.1", port);
                    SSLSocket tls = layer(context, raw, port, protocol, alpn);
                    BufferedReader in = reader(tls);
                    write(tls, "cut here\n");
                    say("ANSWER " + esc(in.readLine()));
                    raw.close();
                    say("CUT");
                    break;
                }
                case "starttls": {
                    Socket raw = new Socket("127.0.0.1", port);
                    // Byte by byte, so nothing after the plain text's last line is read ahead.
                    InputStream plainIn = raw.getInputStream();
                    say("PLAIN " + esc(rawLine(plainIn)));
                    write(raw, "NOOP\r\nSTARTTLS\r\n");
                    say("PLAIN " + esc(rawLine(plainIn)));
                    say("PLAIN " + esc(rawLine(plainIn)));
                    SSLSocket tls = layer(context, raw, port, protocol, alpn);
                    tls.startHandshake();
                    say(describe(tls));
                    BufferedReader in = reader(tls);
                    write(tls, "secret\n");
                    say("ANSWER " + esc(in.readLine()));
                    tls.shutdownOutput();
                    readToEnd(in);
                    tls.close();
                    break;
                }
                default:
                    throw new IllegalArgumentException(step);
            }
        } catch (Exception e) {
            say("FAILED " + e.getClass().getName() + ": " + e.getMessage());
        }
        say("DONE " + name);
    }

    /** One line read a byte at a time, without its LF (a CR before it stays). */
    static String rawLine(InputStream in) throws IOException {
        ByteArrayOutputStream line = new ByteArrayOutputStream();
        int b;
        while ((b = in.read()) >= 0 && b != '\n') {
            line.write(b);
        }
        return line.toString(StandardCharsets.UTF_8);
    }

    // -----------------------------------------------------------------------------------------
    // TLS, JSSE as the server.
    // -----------------------------------------------------------------------------------------

    /**
     * One server step, `NAME/PROTOCOL[/flag...]` (flags: `alpn`, `need-cert`), one accepted
     * connection each:
     * <ul>
     * <li>`echo`: answers lines with `Hello, LINE!` until our close_notify, then writes a
     *     `Bye` line and closes;
     * <li>`refused`: the handshake only (our client is to refuse it, or be refused);
     * <li>`bulk`: echoes bytes until our close_notify, then closes;
     * <li>`flood`: waits for our close_notify, then writes BYTES (`flood/PROTOCOL/BYTES`);
     * <li>`renegotiate`: answers a line, asks for a renegotiation, then answers a line;
     * <li>`close`: answers a line, then `close()` (TLS 1.3: `user_canceled`, then
     *     close_notify, as the input is still open);
     * <li>`cut`: answers a line, then closes the TCP connection without close_notify.
     * </ul>
     */
    static void serverStep(String step) throws Exception {
        String[] parts = step.split("/");
        String name = parts[0];
        Set<String> flags = new HashSet<>(Arrays.asList(parts).subList(2, parts.length));
        Socket raw = listening.accept();
        SSLSocket tls = (SSLSocket) serverFactory.createSocket(raw, null, true);
        SSLParameters p = tls.getSSLParameters();
        p.setProtocols(new String[] {parts[1]});
        p.setNeedClientAuth(flags.contains("need-cert"));
        if (flags.contains("alpn")) {
            p.setApplicationProtocols(new String[] {"http/1.1"});
        }
        tls.setSSLParameters(p);
        tls.setUseClientMode(false);
        say("STEP " + step);
        try {
            switch (name) {
                case "refused":
                case "echo": {
                    tls.startHandshake();
                    say(describe(tls));
                    BufferedReader in = reader(tls);
                    String line;
                    int n = 0;
                    while ((line = in.readLine()) != null) {
                        write(tls, "Hello, " + line + "!\n");
                        n++;
                    }
                    say("CLIENT-CLOSED after " + n + " lines");
                    write(tls, "Bye after your close_notify!\n");
                    say("BYE-WRITTEN");
                    break;
                }
                case "bulk": {
                    tls.startHandshake();
                    say(describe(tls));
                    InputStream in = tls.getInputStream();
                    OutputStream out = tls.getOutputStream();
                    byte[] buffer = new byte[11000];
                    long echoed = 0;
                    int n;
                    while ((n = in.read(buffer)) >= 0) {
                        out.write(buffer, 0, n);
                        echoed += n;
                    }
                    out.flush();
                    say("ECHOED " + echoed);
                    break;
                }
                case "flood": {
                    long total = Long.parseLong(parts[2]);
                    tls.startHandshake();
                    int n = tls.getInputStream().read();
                    say("CLIENT-CLOSED " + n);
                    writeBulk(tls.getOutputStream(), total);
                    say("FLOODED " + total);
                    break;
                }
                case "renegotiate": {
                    BufferedReader in = reader(tls);
                    say("GOT " + esc(in.readLine()));
                    write(tls, "Hello, before!\n");
                    try {
                        tls.startHandshake();
                        say("RENEGOTIATION-STARTED");
                        write(tls, "after the renegotiation\n");
                        say("GOT " + esc(in.readLine()));
                    } catch (IOException e) {
                        say("RENEGOTIATION-FAILED " + e.getClass().getName() + ": "
                                + e.getMessage());
                    }
                    break;
                }
                case "close": {
                    BufferedReader in = reader(tls);
                    say("GOT " + esc(in.readLine()));
                    write(tls, "Hello, before the close!\n");
                    tls.close();
                    say("CLOSED");
                    break;
                }
                case "cut": {
                    BufferedReader in = reader(tls);
                    say("GOT " + esc(in.readLine()));
                    write(tls, "Hello, before the cut!\n");
                    raw.close();
                    say("CUT");
                    break;
                }
                default:
                    throw new IllegalArgumentException(step);
            }
        } catch (Exception e) {
            say("FAILED " + e.getClass().getName() + ": " + e.getMessage());
        }
        try {
            tls.close();
        } catch (IOException e) {
            say("CLOSE-FAILED " + e);
        }
        say("DONE " + name);
    }

    static SSLSocketFactory serverFactory;

    static Map<Boolean, SSLContext> serverContexts = new HashMap<>();

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        // A `jdk.tls.keyLimits` security property from the command line (-DjssePeer.keyLimits),
        // e.g. "AES/GCM/NoPadding KeyUpdate 2^12": JSSE then updates its keys after that many
        // bytes of each direction (TLS 1.3 KeyUpdate, asking us to update ours after reading).
        // Set before any TLS class is used.
        String limits = System.getProperty("jssePeer.keyLimits");
        if (limits != null) {
            Security.setProperty("jdk.tls.keyLimits", limits);
        }
        switch (mode) {
            case "plain-client":
                plainClient(Integer.parseInt(args[1]));
                break;
            case "plain-server":
                plainServer();
                break;
            case "tls-client":
                otherCa = args[4];
                for (int i = 5; i < args.length; i++) {
                    clientStep(args[1], args[2], args[3], args[i]);
                }
                break;
            case "tls-server": {
                for (int i = 4; i < args.length; i++) {
                    String[] parts = args[i].split("/");
                    boolean needCert = Arrays.asList(parts).contains("need-cert");
                    // One context for each kind of step, so that sessions can be resumed.
                    SSLContext context = serverContexts.get(needCert);
                    if (context == null) {
                        context = context(needCert ? args[1] : "-", args[2], args[3]);
                        serverContexts.put(needCert, context);
                    }
                    serverFactory = context.getSocketFactory();
                    if (i == 4) {
                        listening = new ServerSocket(0, 8, InetAddress.getLoopbackAddress());
                        say("LISTENING " + listening.getLocalPort());
                    }
                    serverStep(args[i]);
                }
                listening.close();
                break;
            }
            default:
                throw new IllegalArgumentException(mode);
        }
        say("FINISHED");
    }

    static ServerSocket listening;

    /** A CA that issued none of the certificates (the flag `untrusted`). */
    static String otherCa;
}
