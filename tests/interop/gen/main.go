// Command gen writes the Go-produced test vectors for tether's gob and
// jsonrpc codecs into tests/data/{gob,jsonrpc}.  Standard library only.
//
//	GO111MODULE=off GOCACHE=$(mktemp -d) GOPATH=$(mktemp -d) \
//	    go run ./tests/interop/gen tests/data
//
// Each stream comes from the real net/rpc client or server code writing
// into an in-memory connection.  gob type ids are handed out per process,
// so every stream is produced by a fresh child process (the program runs
// itself with a mode argument), exactly as a fresh Go peer would send it;
// the "shifted" vectors come from a process that used gob before, so
// their ids do not start at 65.
//
// "verify-*" modes read a stream tether wrote (stdin) and decode it with
// Go's own decoder, printing the values as JSON; used by hand when
// checking that Go accepts what tether sends.
package main

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// Go mirrors of examples/calculator/calculator.proto and
// tests/proto/codectest.proto.
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

type Calculator struct{}

func (*Calculator) Add(a *Args, r *int) error { *r = a.A + a.B; return nil }
func (*Calculator) Div(a *Args, r *int) error {
	if a.B == 0 {
		return errors.New("divide by zero")
	}
	*r = a.A / a.B
	return nil
}

type Codec struct{}

func (*Codec) Echo(a *Rich, r *Rich) error { *r = *a; return nil }

func richValue() Rich {
	opt := int64(42)
	return Rich{
		Name:   "h\u00e9llo <w> & \"q\" \\ \n\t\x01 \u2028 \xff",
		Values: []int64{1, -1, 0, 300, math.MaxInt64, math.MinInt64},
		Scores: map[string]int64{"a": 1},
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
		Labels: map[int64]string{-3: "neg"},
		Opt:    &opt,
		S:      -9,
		Ratios: []float64{0, 1e21, 1e-7, 123456789.125, 5e-324, 1.7976931348623157e308, 100,
			1e20, -2.5, 3.14159, 1e-6, math.Copysign(0, -1)},
	}
}

// conn is an in-memory connection: Read hands out the chunks of in one
// at a time, each only after the previous one was answered with a
// Write, so a server's replies come out in a fixed order.
type conn struct {
	mu     sync.Mutex
	cond   *sync.Cond
	in     [][]byte
	cur    []byte
	next   int
	writes int
	out    bytes.Buffer
}

func newConn(in [][]byte) *conn {
	c := &conn{in: in}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.cur) == 0 {
		if c.next >= len(c.in) {
			return 0, io.EOF
		}
		for c.writes < c.next {
			c.cond.Wait()
		}
		c.cur = c.in[c.next]
		c.next++
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.Write(p)
	c.writes++
	c.cond.Broadcast()
	return len(p), nil
}

func (c *conn) Close() error { return nil }

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// calcCalls is the call sequence of protocol-notes 3.4.
var calcCalls = []struct {
	method string
	args   Args
}{
	{"Calculator.Add", Args{1, 2}},
	{"Calculator.Add", Args{1, 2}},
	{"Calculator.Add", Args{-5, 300}},
	{"Calculator.Div", Args{1, 0}},
	{"Calculator.Nope", Args{1, 2}},
	{"Calculator.Add", Args{0, 0}},
}

// clientStream returns what a client writes for each call, one chunk per
// call, using the given client constructor.
func clientStreams(newClient func(io.ReadWriteCloser) *rpc.Client, calls func(*rpc.Client)) {
	c := newConn(nil)
	cl := newClient(c)
	calls(cl)
	os.Stdout.Write(c.out.Bytes())
}

func runMode(mode string) {
	switch mode {
	case "gob-client-calc":
		// One chunk per call: the request bytes are written before Go returns.
		c := newConn(nil)
		cl := rpc.NewClient(c)
		var chunks [][]byte
		for _, call := range calcCalls {
			before := c.out.Len()
			var r int
			cl.Go(call.method, &call.args, &r, make(chan *rpc.Call, 1))
			chunks = append(chunks, append([]byte(nil), c.out.Bytes()[before:]...))
		}
		writeChunks(chunks)
	case "gob-server-calc":
		serve(readChunks(), func(s *rpc.Server, c *conn) { s.ServeConn(c) }, new(Calculator))
	case "gob-server-calc-shifted":
		// Use gob for other types first: the process's ids move on.
		var b bytes.Buffer
		must(gob.NewEncoder(&b).Encode(struct{ X, Y string }{"a", "b"}))
		must(gob.NewEncoder(&b).Encode([]Inner{{"z", 1}}))
		serve(readChunks(), func(s *rpc.Server, c *conn) { s.ServeConn(c) }, new(Calculator))
	case "gob-client-rich":
		c := newConn(nil)
		cl := rpc.NewClient(c)
		r := richValue()
		var out Rich
		cl.Go("Codec.Echo", &r, &out, make(chan *rpc.Call, 1))
		empty := Rich{}
		before := c.out.Len()
		cl.Go("Codec.Echo", &empty, &out, make(chan *rpc.Call, 1))
		writeChunks([][]byte{c.out.Bytes()[:before], c.out.Bytes()[before:]})
	case "gob-server-rich":
		serve(readChunks(), func(s *rpc.Server, c *conn) { s.ServeConn(c) }, new(Codec))
	case "json-client-calc":
		c := newConn(nil)
		cl := jsonrpc.NewClient(c)
		for _, call := range calcCalls[:5] {
			var r int
			cl.Go(call.method, &call.args, &r, make(chan *rpc.Call, 1))
		}
		os.Stdout.Write(c.out.Bytes())
	case "json-rich":
		b, err := json.Marshal(richValue())
		must(err)
		os.Stdout.Write(b)
	case "json-client-rich":
		c := newConn(nil)
		cl := jsonrpc.NewClient(c)
		r := richValue()
		var out Rich
		cl.Go("Codec.Echo", &r, &out, make(chan *rpc.Call, 1))
		os.Stdout.Write(c.out.Bytes())
	case "json-server-rich":
		in, err := io.ReadAll(os.Stdin)
		must(err)
		serve([][]byte{in}, func(s *rpc.Server, c *conn) { s.ServeCodec(jsonrpc.NewServerCodec(c)) },
			new(Codec))
	case "verify-gob-request":
		verifyGob(true)
	case "verify-gob-reply":
		verifyGob(false)
	default:
		must(fmt.Errorf("unknown mode %q", mode))
	}
}

// Chunks travel between modes as a gob-encoded [][]byte (this framing is
// only for the generator itself; the vector files hold raw streams).
func writeChunks(chunks [][]byte) { must(gob.NewEncoder(os.Stdout).Encode(chunks)) }

func readChunks() [][]byte {
	var chunks [][]byte
	must(gob.NewDecoder(os.Stdin).Decode(&chunks))
	return chunks
}

func serve(in [][]byte, run func(*rpc.Server, *conn), rcvr any) {
	s := rpc.NewServer()
	must(s.Register(rcvr))
	c := newConn(in)
	run(s, c)
	os.Stdout.Write(c.out.Bytes())
}

// verifyGob decodes a request (client->server) or reply stream with Go's
// decoder and prints header and body values as JSON lines.
func verifyGob(request bool) {
	dec := gob.NewDecoder(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for {
		var err error
		if request {
			var h rpc.Request
			if err = dec.Decode(&h); err == nil {
				must(enc.Encode(h))
				var body Rich
				if h.ServiceMethod != "Codec.Echo" {
					var a Args
					must(dec.Decode(&a))
					must(enc.Encode(a))
					continue
				}
				must(dec.Decode(&body))
				must(enc.Encode(body))
			}
		} else {
			var h rpc.Response
			if err = dec.Decode(&h); err == nil {
				must(enc.Encode(h))
				if h.Error != "" {
					must(dec.Decode(nil))
					continue
				}
				if h.ServiceMethod == "Codec.Echo" {
					var body Rich
					must(dec.Decode(&body))
					must(enc.Encode(body))
				} else {
					var n *int
					must(dec.Decode(&n))
					must(enc.Encode(n))
				}
			}
		}
		if err == io.EOF {
			return
		}
		must(err)
	}
}

// run executes this program in mode with stdin, returning its stdout.
func run(mode string, stdin []byte) []byte {
	cmd := exec.Command(os.Args[0], mode)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	must(err)
	return out
}

func decodeChunks(b []byte) [][]byte {
	var chunks [][]byte
	must(gob.NewDecoder(bytes.NewReader(b)).Decode(&chunks))
	return chunks
}

func save(dir, name string, b []byte) {
	must(os.MkdirAll(dir, 0o755))
	must(os.WriteFile(filepath.Join(dir, name), b, 0o644))
}

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "-h" || os.Args[1] == "--help") {
		fmt.Println("usage: gen DATA_DIR | gen MODE")
		return
	}
	if len(os.Args) != 2 {
		must(errors.New("usage: gen DATA_DIR"))
	}
	if _, err := os.Stat(os.Args[1]); err != nil {
		runMode(os.Args[1])
		return
	}
	data := os.Args[1]
	gobDir := filepath.Join(data, "gob")
	jsonDir := filepath.Join(data, "jsonrpc")

	calcReq := run("gob-client-calc", nil)
	save(gobDir, "calc_client.bin", bytes.Join(decodeChunks(calcReq), nil))
	save(gobDir, "calc_server.bin", run("gob-server-calc", calcReq))
	save(gobDir, "calc_server_shifted.bin", run("gob-server-calc-shifted", calcReq))

	richReq := run("gob-client-rich", nil)
	rc := decodeChunks(richReq)
	save(gobDir, "rich_client.bin", rc[0])
	save(gobDir, "rich_client_empty.bin", rc[1])
	save(gobDir, "rich_server.bin", run("gob-server-rich", richReq))

	save(jsonDir, "calc_client.json", run("json-client-calc", nil))
	save(jsonDir, "rich_value.json", run("json-rich", nil))
	richJSON := run("json-client-rich", nil)
	save(jsonDir, "rich_client.json", richJSON)
	save(jsonDir, "rich_server.json", run("json-server-rich", richJSON))
}
