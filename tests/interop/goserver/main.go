// Command goserver is a plain Go net/rpc server for tether's interop
// tests: the calculator and the Codec echo service, served with Go's
// default gob codec on one port and net/rpc/jsonrpc on another.
// Standard library only.
//
//	goserver [-tls-cert C.pem -tls-key K.pem [-tls-client-ca CA.pem]]
//
// Prints "gob ADDR" and "jsonrpc ADDR" once listening; runs until killed.
// With -tls-cert both listeners are crypto/tls (tls.Listen); with
// -tls-client-ca they require a client certificate signed by that CA.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
)

type Args struct{ A, B int }

type Calculator int

func (*Calculator) Add(a *Args, r *int) error { *r = a.A + a.B; return nil }
func (*Calculator) Sub(a *Args, r *int) error { *r = a.A - a.B; return nil }
func (*Calculator) Mul(a *Args, r *int) error { *r = a.A * a.B; return nil }
func (*Calculator) Div(a *Args, r *int) error {
	if a.B == 0 {
		return errors.New("divide by zero")
	}
	*r = a.A / a.B
	return nil
}

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

type Codec int

func (*Codec) Echo(a *Rich, r *Rich) error     { *r = *a; return nil }
func (*Codec) EchoPool(a *Rich, r *Rich) error { *r = *a; return nil }

var tlsConf *tls.Config

func listen() net.Listener {
	var ln net.Listener
	var err error
	if tlsConf != nil {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", tlsConf)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "goserver:", err)
		os.Exit(1)
	}
	return ln
}

func main() {
	cert := flag.String("tls-cert", "", "serve TLS with this certificate")
	key := flag.String("tls-key", "", "the certificate's key")
	clientCA := flag.String("tls-client-ca", "", "require client certificates from this CA")
	flag.Parse()
	if *cert != "" {
		kp, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			fmt.Fprintln(os.Stderr, "goserver:", err)
			os.Exit(1)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{kp}}
		if *clientCA != "" {
			pem, err := os.ReadFile(*clientCA)
			pool := x509.NewCertPool()
			if err != nil || !pool.AppendCertsFromPEM(pem) {
				fmt.Fprintln(os.Stderr, "goserver: bad client CA", *clientCA, err)
				os.Exit(1)
			}
			tlsConf.ClientCAs = pool
			tlsConf.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	rpc.Register(new(Calculator))
	rpc.Register(new(Codec))
	g, j := listen(), listen()
	fmt.Printf("gob %s\njsonrpc %s\n", g.Addr(), j.Addr())
	go rpc.Accept(g)
	for {
		c, err := j.Accept()
		if err != nil {
			return
		}
		go jsonrpc.ServeConn(c)
	}
}
