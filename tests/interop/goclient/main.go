// Command goclient is Go's side of tether's interop tests: Go's own
// net/rpc clients (gob, or net/rpc/jsonrpc) calling a tether server.
// Standard library only; tests/integration/test_interop.sh builds it with
// GO111MODULE=off.
//
//	goclient -addr 127.0.0.1:PORT -codec gob|jsonrpc [-big BYTES]
//	goclient -addr 127.0.0.1:PORT -bad
//	goclient ... -tls-ca CA.pem [-tls-cert C.pem -tls-key K.pem] [-server-name N]
//	goclient -addr 127.0.0.1:PORT [-tls-ca CA.pem] -expect-fail
//
// The first form runs the calls (Add, Div by zero, unknown names, 50
// goroutines, the rich message inline and from the server's worker pool,
// a payload of BYTES near the server's limit and one past it).  -bad
// checks that garbage, a half JSON object and Go's HTTP variant of
// net/rpc each get their connection closed while a client of each codec
// keeps calling.  Prints "ok: ..." per check; exits 1 on the first failure.
// With -tls-ca every connection is Go's crypto/tls (tls.Dial, then
// rpc.NewClient or jsonrpc.NewClient on it); -expect-fail dials once and
// prints the error Go's client sees (exit 0 only when the call failed).
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mirrors examples/calculator/calculator.proto and tests/proto/codectest.proto.
type Args struct{ A, B int }

type Inner struct {
	Name  string
	Count int64
}

type Rich struct {
	Name   string
	Values []int64
	Scores map[string]int64
	Child  *Inner
	Tags   []string
	Data   []byte
	Ratio  float64
	Ok     bool
	Big    uint64
	Small  int32
	USmall uint32
	F      float32
	Color  int32
	Items  []Inner
	Labels map[int64]string
	Opt    *int64
	S      int64
	Ratios []float64
}

func richValue() *Rich {
	opt := int64(42)
	return &Rich{
		Name:   "h\u00e9llo <w> & \"q\" \\ \n\t\x01 \u2028",
		Values: []int64{1, -1, 0, 300, math.MaxInt64, math.MinInt64},
		Scores: map[string]int64{"a": 1, "b": -2, "": 0},
		Child:  &Inner{Name: "kid", Count: 7},
		Tags:   []string{"x", "", "yz"},
		Data:   []byte{0, 1, 2, 0xff},
		Ratio:  0.1,
		Ok:     true,
		Big:    math.MaxUint64,
		Small:  -5,
		USmall: 7,
		F:      1.5,
		Color:  2,
		Items:  []Inner{{Name: "i1", Count: 1}, {}},
		Labels: map[int64]string{-3: "neg", 4: "four"},
		Opt:    &opt,
		S:      -9,
		Ratios: []float64{0, 1e21, 1e-7, 123456789.125, 5e-324, 1.7976931348623157e308, -2.5},
	}
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", a...)
	os.Exit(1)
}

// TLS settings from the flags (nil: plaintext).
var tlsConf *tls.Config

func tlsSetup(ca, cert, key, name string) {
	if ca == "" {
		return
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		fail("read %s: %v", ca, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fail("no certificates in %s", ca)
	}
	tlsConf = &tls.Config{RootCAs: pool, ServerName: name}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			fail("load %s: %v", cert, err)
		}
		tlsConf.Certificates = []tls.Certificate{kp}
	}
}

func dialTLSConn(addr string) (*tls.Conn, error) {
	conf := tlsConf.Clone()
	if conf.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		conf.ServerName = host
	}
	return tls.Dial("tcp", addr, conf)
}

func dialTLS(addr, codec string) (*rpc.Client, error) {
	conn, err := dialTLSConn(addr)
	if err != nil {
		return nil, err
	}
	if codec == "jsonrpc" {
		return jsonrpc.NewClient(conn), nil
	}
	return rpc.NewClient(conn), nil
}

func dial(addr, codec string) *rpc.Client {
	var c *rpc.Client
	var err error
	if tlsConf != nil {
		c, err = dialTLS(addr, codec)
	} else if codec == "jsonrpc" {
		c, err = jsonrpc.Dial("tcp", addr)
	} else {
		c, err = rpc.Dial("tcp", addr)
	}
	if err != nil {
		fail("dial %s: %v", addr, err)
	}
	return c
}

func wantErr(err error, text string) {
	if err == nil || err.Error() != text {
		fail("want error %q, got %v", text, err)
	}
}

func calls(addr, codec string, big int) {
	c := dial(addr, codec)
	defer c.Close()
	var r int
	if err := c.Call("Calculator.Add", &Args{1, 2}, &r); err != nil || r != 3 {
		fail("Add: %v %d", err, r)
	}
	fmt.Println("ok: Add")
	wantErr(c.Call("Calculator.Div", &Args{1, 0}, &r), "divide by zero")
	fmt.Println("ok: Div by zero")
	wantErr(c.Call("Calculator.Nope", &Args{1, 2}, &r), "rpc: can't find method Calculator.Nope")
	wantErr(c.Call("Nope.Add", &Args{1, 2}, &r), "rpc: can't find service Nope.Add")
	wantErr(c.Call("NoDot", &Args{1, 2}, &r), "rpc: service/method request ill-formed: NoDot")
	// The connection survives errors.
	if err := c.Call("Calculator.Sub", &Args{5, 7}, &r); err != nil || r != -2 {
		fail("Sub after errors: %v %d", err, r)
	}
	fmt.Println("ok: unknown names")

	// 50 goroutines on one connection, inline and worker-pool methods.
	var wg sync.WaitGroup
	var bad int32
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				var r int
				m, want := "Calculator.Add", g+i
				if i%3 == 0 {
					m, want = "Calculator.Mul", g*i
				}
				if err := c.Call(m, &Args{g, i}, &r); err != nil || r != want {
					atomic.AddInt32(&bad, 1)
				}
			}
		}(g)
	}
	wg.Wait()
	if bad != 0 {
		fail("%d concurrent calls failed", bad)
	}
	fmt.Println("ok: 50 goroutines x 200 calls")

	in := richValue()
	for _, m := range []string{"Codec.Echo", "Codec.EchoPool"} {
		var out Rich
		if err := c.Call(m, in, &out); err != nil {
			fail("%s: %v", m, err)
		}
		if !reflect.DeepEqual(in, &out) {
			fail("%s: sent %+v, got %+v", m, in, out)
		}
	}
	fmt.Println("ok: rich message (strings, lists, maps, nested), inline and pool")

	if big > 0 {
		// Near the limit: the whole request or reply must fit in big bytes.
		in := &Rich{Name: strings.Repeat("a", big-4096), Values: []int64{1, 2, 3}}
		var out Rich
		if err := c.Call("Codec.EchoPool", in, &out); err != nil || out.Name != in.Name {
			fail("large payload (%d bytes): %v", len(in.Name), err)
		}
		fmt.Printf("ok: payload of %d bytes\n", len(in.Name))
		// Past the limit: the server closes that connection; others go on.
		c2 := dial(addr, codec)
		in.Name = strings.Repeat("a", big+1)
		done := make(chan error, 1)
		go func() { done <- c2.Call("Codec.Echo", in, &out) }()
		select {
		case err := <-done:
			if err == nil {
				fail("oversized call succeeded")
			}
		case <-time.After(10 * time.Second):
			fail("oversized call: no answer and no close")
		}
		c2.Close()
		if err := c.Call("Calculator.Add", &Args{2, 2}, &r); err != nil || r != 4 {
			fail("call after the oversized one: %v", err)
		}
		fmt.Println("ok: oversized message closes only its connection")
	}
}

// closed waits until the server closes conn (EOF or reset).
func closed(conn net.Conn) error {
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("server kept the connection open")
	}
	return nil
}

func bad(addr string) {
	// Keep one client of each codec calling meanwhile.
	var stop int32
	var wg sync.WaitGroup
	var n [2]int64
	for i, codec := range []string{"gob", "jsonrpc"} {
		wg.Add(1)
		go func(i int, codec string) {
			defer wg.Done()
			c := dial(addr, codec)
			defer c.Close()
			for atomic.LoadInt32(&stop) == 0 {
				var r int
				if err := c.Call("Calculator.Add", &Args{i, 1}, &r); err != nil || r != i+1 {
					fail("%s client during bad input: %v", codec, err)
				}
				atomic.AddInt64(&n[i], 1)
			}
		}(i, codec)
	}
	inputs := map[string]string{
		"garbage":             "hello\n",
		"binary garbage":      "\x00\x01\x02\x03\x04\x05\x06\x07\x08",
		"broken json":         "{\"method\":\"Calculator.Add\",\"params\":[{\"A\":1}],\"id\":0}\n{x:1}\n",
		"gob then bad length": "",
	}
	for name, data := range inputs {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			fail("dial: %v", err)
		}
		if name == "gob then bad length" {
			// A real gob client's first call, then a message length of
			// 2 GiB on the same stream.
			c := rpc.NewClient(conn)
			var r int
			if err := c.Call("Calculator.Add", &Args{1, 2}, &r); err != nil || r != 3 {
				fail("gob call: %v", err)
			}
			conn.Write([]byte("\xfc\x7f\xff\xff\xff\x00"))
		} else {
			conn.Write([]byte(data))
		}
		if err := closed(conn); err != nil {
			fail("%s: %v", name, err)
		}
		conn.Close()
		fmt.Printf("ok: %s closes the connection\n", name)
	}
	// Go's HTTP transport for net/rpc is another protocol: refused.
	if _, err := rpc.DialHTTP("tcp", addr); err == nil {
		fail("DialHTTP succeeded")
	}
	fmt.Println("ok: rpc.DialHTTP refused")
	// A gob client talking to what it thinks is gob, reading jsonrpc
	// replies: the wrong codec on one side breaks only that connection.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		fail("dial: %v", err)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "{\"method\":\"Calculator.Add\",\"params\":[{\"A\":1,\"B\":2}],\"id\":0}\n")
	w.Flush()
	c := rpc.NewClient(conn) // reads the JSON reply as gob
	var r int
	if err := c.Call("Calculator.Add", &Args{1, 2}, &r); err == nil {
		fail("gob client reading jsonrpc replies succeeded")
	}
	c.Close()
	fmt.Println("ok: wrong codec fails only its own connection")
	time.Sleep(200 * time.Millisecond)
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	if n[0] == 0 || n[1] == 0 {
		fail("the well-behaved clients made no calls (%d, %d)", n[0], n[1])
	}
	fmt.Printf("ok: other clients went on (%d gob, %d jsonrpc calls)\n", n[0], n[1])
}

func main() {
	addr := flag.String("addr", "", "tether server")
	codec := flag.String("codec", "gob", "gob or jsonrpc")
	big := flag.Int("big", 0, "server's message limit, to test payloads near it")
	badMode := flag.Bool("bad", false, "garbage and wrong codecs")
	ca := flag.String("tls-ca", "", "speak TLS, verifying the server against this CA")
	cert := flag.String("tls-cert", "", "client certificate (mTLS)")
	key := flag.String("tls-key", "", "client certificate's key")
	name := flag.String("server-name", "", "name to verify (default: the address's host)")
	expectFail := flag.Bool("expect-fail", false, "one call that must fail; prints Go's error")
	onlyAdd := flag.Bool("only-add", false, "just Calculator.Add (servers without Codec)")
	flag.Parse()
	tlsSetup(*ca, *cert, *key, *name)
	if *onlyAdd {
		c := dial(*addr, *codec)
		var r int
		if err := c.Call("Calculator.Add", &Args{1, 2}, &r); err != nil || r != 3 {
			fail("Add: %v %d", err, r)
		}
		c.Close()
		fmt.Println("ok: Add")
		return
	}
	if *expectFail {
		// With TLS 1.3 a refused client certificate shows at the first
		// read, not in tls.Dial.  Read it here: through net/rpc the reason
		// is lost whenever its reader sees the alert before the call is
		// sent (the call then fails with "connection is shut down").
		if tlsConf != nil {
			conn, err := dialTLSConn(*addr)
			if err == nil {
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				var b [1]byte
				_, err = conn.Read(b[:])
				conn.Close()
			}
			if err == nil {
				fail("the server sent data unasked")
			}
			fmt.Println("error:", err)
			return
		}
		var c *rpc.Client
		var err error
		if *codec == "jsonrpc" {
			c, err = jsonrpc.Dial("tcp", *addr)
		} else {
			c, err = rpc.Dial("tcp", *addr)
		}
		if err == nil {
			var r int
			err = c.Call("Calculator.Add", &Args{1, 2}, &r)
			c.Close()
		}
		if err == nil {
			fail("the call succeeded")
		}
		fmt.Println("error:", err)
		return
	}
	if *badMode {
		bad(*addr)
	} else {
		calls(*addr, *codec, *big)
	}
}
