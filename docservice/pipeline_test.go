package docservice

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"
)

// Uploads share uploadChunks: a pipeline takes one chunk (waiting as long
// as its context lasts) and more only when they are free, and gives all
// of them back when it stops.
func TestPipelineChunkBudget(t *testing.T) {
	budget := make(slots, 5)
	nop := func([]byte) error { return nil }
	a, err := startPipeline(context.Background(), budget, nop)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.held) != chunkBuffers || len(budget) != chunkBuffers {
		t.Fatalf("an upload alone holds %d chunks (budget in use %d), want %d", len(a.held), len(budget), chunkBuffers)
	}
	b, err := startPipeline(context.Background(), budget, nop)
	if err != nil || len(b.held) != 1 {
		t.Fatalf("second upload: %v, %d chunks; want the one left", err, len(b.held))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := startPipeline(ctx, budget, nop); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third upload with no chunk free: %v, want it to wait and give up with its context", err)
	}
	_ = a.stop()
	_ = b.stop()
	_ = b.stop() // stop twice gives back nothing twice
	if len(budget) != 0 {
		t.Fatalf("%d chunks still counted after both stopped", len(budget))
	}
}

// With a single chunk the stages still see every byte, in order.
func TestPipelineOneChunk(t *testing.T) {
	var got bytes.Buffer
	p, err := startPipeline(context.Background(), make(slots, 1), func(b []byte) error { got.Write(b); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	for i := range 20 {
		buf := p.buffer()
		n := copy(*buf, bytes.Repeat([]byte{byte(i)}, 1000+i))
		want.Write((*buf)[:n])
		if err := p.send(buf, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(got.Bytes()); !bytes.Equal(sum[:], want.Sum(nil)) {
		t.Fatal("the stage saw other bytes than were sent")
	}
}

// An upload that finds every chunk in use waits, gives up with its client
// (nothing kept), and goes through once chunks are free.
func TestUploadWaitsForAChunk(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	pdf := makePDF("Waiting", 3, 10)
	e.uploadGivesUpWhileFull(t, u, pdf, e.svc.chunkSlots, "upload chunk")
	e.mustUpload(u, "waiting.pdf", pdf, nil)
	if len(e.svc.chunkSlots) != 0 {
		t.Fatal("the upload kept its chunks")
	}
}
