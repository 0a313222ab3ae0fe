package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"iter"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// Scan returns an iterator over the entries of [start, end) in key order
// (descending with opts.Reverse), read from one consistent snapshot. An
// empty start means the first key, an empty end means past the last key.
// Each range over the iterator runs a new scan.
//
// The iterator yields (entry, nil) for each entry and, if the scan fails,
// one final (KeyValue{}, err). Breaking out of the loop ends the scan and
// releases its stream. A scan that fails with Unavailable before yielding
// anything is retried; once entries have been yielded it is not (a new scan
// would not be from the same snapshot). Entries belong to the caller. A
// negative limit or a start after end is ErrInvalidArgument.
//
// Example:
//
//	for kv, err := range c.Scan(ctx, []byte("a"), []byte("b"), client.ScanOptions{Limit: 10}) {
//		if err != nil {
//			return err
//		}
//		fmt.Printf("%s=%s\n", kv.Key, kv.Value)
//	}
func (c *Client) Scan(ctx context.Context, start, end []byte, opts ScanOptions) iter.Seq2[KeyValue, error] {
	return func(yield func(KeyValue, error) bool) {
		if opts.Limit < 0 {
			yield(KeyValue{}, invalid("negative scan limit %d", opts.Limit))
			return
		}
		if c.closed.Load() {
			yield(KeyValue{}, ErrClosed)
			return
		}
		if len(start) > 0 && len(end) > 0 && bytes.Compare(start, end) > 0 {
			yield(KeyValue{}, invalid("scan start %q after end %q", start, end))
			return
		}
		req := &kvpb.ScanRequest{
			Start:    start,
			End:      end,
			Limit:    uint64(opts.Limit),
			Reverse:  opts.Reverse,
			KeysOnly: opts.KeysOnly,
		}
		yielded, stopped := false, false
		err := c.retry(ctx, func() (bool, error) {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			st, err := c.kv.Scan(sctx, req)
			if err != nil {
				return true, fromStatus(ctx, err)
			}
			for {
				resp, err := st.Recv()
				if errors.Is(err, io.EOF) {
					return false, nil
				}
				if err != nil {
					return !yielded, fromStatus(ctx, err)
				}
				for _, e := range resp.GetEntries() {
					kv := KeyValue{Key: e.GetKey(), Value: e.GetValue(), Version: e.GetVersion()}
					if !opts.KeysOnly && kv.Value == nil {
						kv.Value = []byte{}
					}
					yielded = true
					if !yield(kv, nil) {
						stopped = true
						return false, nil
					}
				}
			}
		})
		if err != nil && !stopped {
			if c.closed.Load() {
				err = ErrClosed
			}
			yield(KeyValue{}, err)
		}
	}
}

// ScanAll runs Scan and collects its entries. On error it returns the error
// and no entries. Mind the memory: without a limit it holds the whole range.
func (c *Client) ScanAll(ctx context.Context, start, end []byte, opts ScanOptions) ([]KeyValue, error) {
	var out []KeyValue
	for kv, err := range c.Scan(ctx, start, end, opts) {
		if err != nil {
			return nil, err
		}
		out = append(out, kv)
	}
	return out, nil
}
