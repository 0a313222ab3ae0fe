package wire

import (
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flaredb/flaredb/core/engine"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// Loopback serves e on a real gRPC server listening on 127.0.0.1 (an
// ephemeral port, plaintext) and returns a Client connected to it, so that
// every call crosses the engine protocol exactly as it does to a plugin
// process, inside one process. The conformance suite uses it to check an
// engine through the gRPC adapter.
//
// The returned engine owns e: its Close closes the remote engine (and so
// e), then the connection, then the server. It is safe for concurrent use.
func Loopback(e engine.Engine, opts ...ServerOption) (engine.Engine, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%w: loopback listener: %w", engine.ErrInternal, err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	enginepb.RegisterEngineServer(srv, NewServer(e, opts...))
	go func() { _ = srv.Serve(lis) }()
	dial := append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(lis.Addr().String(), dial...)
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("%w: loopback connection: %w", engine.ErrInternal, err)
	}
	return &loopback{Client: NewClient(conn), e: e, conn: conn, srv: srv}, nil
}

type loopback struct {
	*Client
	e    engine.Engine
	conn *grpc.ClientConn
	srv  *grpc.Server
}

// Close closes the remote engine through the protocol, then tears the
// connection and server down. e is closed directly too, in case the Close
// call could not reach it.
func (l *loopback) Close() error {
	err := l.Client.Close()
	err2 := l.e.Close()
	_ = l.conn.Close()
	l.srv.Stop()
	if err != nil {
		return err
	}
	if err2 != nil && !errors.Is(err2, engine.ErrClosed) {
		return err2
	}
	return nil
}
