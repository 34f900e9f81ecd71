package docservice

import (
	"context"
	"sync"
	"unsafe"
)

const (
	// chunkSize is what an upload is hashed and written in.
	chunkSize = 1 << 20
	// chunkBuffers is how many chunks one upload cycles through when they
	// are to be had: one being filled, one being hashed, one being written
	// and one spare to absorb a stall of either stage (4 MiB per upload).
	chunkBuffers = 4
	// uploadChunks bounds the chunks all uploads together hold (16 MiB),
	// so that concurrent uploads cannot add up past docservice's memory
	// target: an upload waits for its first chunk and takes up to
	// chunkBuffers-1 more only while half of them are free. Many uploads at once then
	// run with one chunk each, without overlap, rather than with more
	// memory; one slow upload holds one chunk.
	uploadChunks = 16
	// directAlign is what O_DIRECT needs of a write's buffer address,
	// length and file offset (directio_linux.go): the logical block size
	// of every disk in common use (512 or 4096) divides it.
	directAlign = 4096
)

var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, chunkSize+directAlign)
	off := (directAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign)) % directAlign
	b = b[off:][:chunkSize:chunkSize]
	return &b
}}

// chunk is a filled prefix of a pooled buffer.
type chunk struct {
	buf *[]byte
	n   int
}

// pipeline passes an upload's chunks, in order, through stages that each
// run on a goroutine of their own (hash, then write), so that reading
// the body, hashing and writing overlap: on two cores none of them waits
// for the others. After a stage fails, later chunks skip every stage and
// the first error is reported by send and stop.
type pipeline struct {
	free    chan *[]byte
	in      chan chunk
	done    chan struct{}
	failed  chan struct{} // closed on the first error
	once    sync.Once
	err     error // the first error, set before failed is closed
	held    []*[]byte
	budget  slots // where held's chunks are counted
	stopped bool
}

// startPipeline takes one chunk from budget, waiting for it as long as
// ctx lasts, and up to chunkBuffers-1 more that are free at once while at
// least half the budget stays free: past that, each upload gets one, so
// that a few uploads, which may be slow to fill theirs, cannot hold every
// chunk while others wait.
func startPipeline(ctx context.Context, budget slots, stages ...func([]byte) error) (*pipeline, error) {
	if err := budget.acquire(ctx); err != nil {
		return nil, err
	}
	n := 1
	for n < chunkBuffers && len(budget) < cap(budget)/2 && budget.tryAcquire() {
		n++
	}
	p := &pipeline{free: make(chan *[]byte, chunkBuffers), in: make(chan chunk, chunkBuffers),
		done: make(chan struct{}), failed: make(chan struct{}), budget: budget}
	for range n {
		b := chunkPool.Get().(*[]byte)
		p.held = append(p.held, b)
		p.free <- b
	}
	in := p.in
	for i, stage := range stages {
		last := i == len(stages)-1
		var out chan chunk
		if !last {
			out = make(chan chunk, chunkBuffers)
		}
		go func(in <-chan chunk) {
			for ch := range in {
				select {
				case <-p.failed:
				default:
					if err := stage((*ch.buf)[:ch.n]); err != nil {
						p.fail(err)
					}
				}
				if last {
					p.free <- ch.buf
				} else {
					out <- ch
				}
			}
			if last {
				close(p.done)
			} else {
				close(out)
			}
		}(in)
		in = out
	}
	return p, nil
}

func (p *pipeline) fail(err error) {
	p.once.Do(func() {
		p.err = err
		close(p.failed)
	})
}

// buffer returns a free buffer, waiting for the stages if need be.
func (p *pipeline) buffer() *[]byte { return <-p.free }

// send queues the first n bytes of buf (from buffer) for the stages; n
// may be 0 to hand the buffer back.
func (p *pipeline) send(buf *[]byte, n int) error {
	select {
	case <-p.failed:
		p.free <- buf
		return p.err
	default:
	}
	if n == 0 {
		p.free <- buf
		return nil
	}
	p.in <- chunk{buf, n}
	return nil
}

// stop waits until every queued chunk has passed every stage and returns
// the first error. It may be called more than once.
func (p *pipeline) stop() error {
	if !p.stopped {
		p.stopped = true
		close(p.in)
		<-p.done
		for _, b := range p.held {
			chunkPool.Put(b)
			p.budget.release()
		}
	}
	select {
	case <-p.failed:
		return p.err
	default:
		return nil
	}
}
