package wire

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"

	"google.golang.org/grpc/metadata"
)

// Stream fencing: a client that gives up on a Stream opens the next one
// while calls it sent on the old one may still wait, unread or unstarted,
// on the server; nothing in gRPC makes the old Stream's reset reach the
// server before the new Stream's first call (the reset is sent by a
// goroutine of its own, and a new connection is read by another). So the
// client names itself and numbers its Streams, in the Stream's metadata,
// and the server lets the newest Stream of each client fence off the older
// ones: from the moment a Stream of a higher epoch opens, the calls of the
// client's older Streams not yet admitted never run, and a Stream older
// than one already seen is refused (while the server remembers the client:
// see maxIdleClients). An Apply admitted before the fence may
// still run, but the new Stream's Applies of the same keys wait for it
// (applyOrder), so a write the client has given up on never lands after
// one it sent later.

// Metadata keys of a Stream call: the client's random name and the
// Stream's epoch, a decimal number that increases with each Stream the
// client opens.
const (
	mdStreamClient = "flaredb-stream-client"
	mdStreamEpoch  = "flaredb-stream-epoch"
)

// maxIdleClients bounds the clients without an open Stream whose highest
// epoch the server remembers; beyond it the ones idle the longest are
// forgotten, and a late Stream of a forgotten client is no longer refused
// (in practice a server has one client, its plugin host, which opens a
// new Stream only when the last one broke).
const maxIdleClients = 1024

// streamAppend adds a Stream's client name and epoch to ctx's outgoing
// metadata.
func streamAppend(ctx context.Context, client string, epoch uint64) context.Context {
	return metadata.AppendToOutgoingContext(ctx, mdStreamClient, client, mdStreamEpoch, strconv.FormatUint(epoch, 10))
}

// streamIdentity returns the client name and epoch of the Stream whose
// context is ctx, and false if the client sent none (or an epoch that is
// not a number): such a Stream is not fenced.
func streamIdentity(ctx context.Context) (client string, epoch uint64, ok bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	names, epochs := md.Get(mdStreamClient), md.Get(mdStreamEpoch)
	if len(names) != 1 || len(epochs) != 1 || names[0] == "" {
		return "", 0, false
	}
	epoch, err := strconv.ParseUint(epochs[0], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return names[0], epoch, true
}

// fenceClient is what the server knows of one client's Streams.
type fenceClient struct {
	epoch uint64 // the highest seen
	open  map[*fencedStream]struct{}
	// idleAt is the applyOrder.idleSeq at which the client's last open
	// Stream closed; 0 while it has one open.
	idleAt uint64
}

// idleClient is an entry of applyOrder.idle: the client name became idle at
// seq (stale once the client has opened a Stream since).
type idleClient struct {
	name string
	seq  uint64
}

// fencedStream is one open Stream of a named client. fenced is set under
// applyOrder.mu, so that admit sees it or its Apply comes first, and may
// be read without it otherwise.
type fencedStream struct {
	client string
	epoch  uint64
	fenced atomic.Bool
	cancel context.CancelFunc // cancels the contexts of the Stream's calls
}

// openStream registers a Stream of client at epoch, whose calls' contexts
// cancel cancels, and fences off the client's open Streams of lower
// epochs: they are marked and their calls' contexts canceled, under the
// lock that admits Applies. It returns false for a Stream whose epoch is
// lower than one the client has already opened: it must be refused.
func (o *applyOrder) openStream(client string, epoch uint64, cancel context.CancelFunc) (*fencedStream, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.clients == nil {
		o.clients = make(map[string]*fenceClient)
	}
	c := o.clients[client]
	if c == nil {
		c = &fenceClient{open: make(map[*fencedStream]struct{})}
		o.clients[client] = c
	}
	if epoch < c.epoch {
		return nil, false
	}
	if c.idleAt != 0 {
		c.idleAt = 0 // its entry in o.idle is now stale
		o.nIdle--
	}
	if epoch > c.epoch {
		c.epoch = epoch
		for st := range c.open {
			if st.epoch < epoch && !st.fenced.Load() {
				st.fenced.Store(true)
				st.cancel()
			}
		}
	}
	st := &fencedStream{client: client, epoch: epoch, cancel: cancel}
	c.open[st] = struct{}{}
	return st, true
}

// closeStream forgets st, an ended Stream (nil is ignored). The client's
// highest epoch is kept, but beyond maxIdleClients idle clients the ones
// idle the longest are forgotten.
func (o *applyOrder) closeStream(st *fencedStream) {
	if st == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.clients[st.client]
	delete(c.open, st)
	if len(c.open) > 0 {
		return
	}
	o.idleSeq++
	c.idleAt = o.idleSeq
	o.idle = append(o.idle, idleClient{name: st.client, seq: o.idleSeq})
	o.nIdle++
	live := func(e idleClient) bool {
		c := o.clients[e.name]
		return c != nil && c.idleAt == e.seq
	}
	for o.nIdle > maxIdleClients {
		e := o.idle[0]
		o.idle = o.idle[1:]
		if live(e) {
			delete(o.clients, e.name)
			o.nIdle--
		}
	}
	if len(o.idle) > 2*maxIdleClients {
		// Drop the stale entries (at most maxIdleClients are live).
		o.idle = slices.DeleteFunc(slices.Clone(o.idle), func(e idleClient) bool { return !live(e) })
	}
}

// isFenced reports whether a newer Stream of st's client has fenced st off
// (false for nil).
func (st *fencedStream) isFenced() bool { return st != nil && st.fenced.Load() }
