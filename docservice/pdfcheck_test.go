package docservice

import (
	"bytes"
	"context"
	"testing"
)

func TestMakePDFIsValid(t *testing.T) {
	pdf := makePDF("Hello", 2, 10)
	info, err := checkPDF(context.Background(), bytes.NewReader(pdf), int64(len(pdf)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pages == nil || *info.Pages != 2 || info.Title == nil || *info.Title != "Hello" {
		t.Fatalf("info = %+v", info)
	}
}

// Large files get the bounded frame check: valid ones pass, cut ones fail.
func TestCheckPDFFrame(t *testing.T) {
	pdf := makePDF("Big", 1, fullCheckMaxBytes+1000)
	info, err := checkPDF(context.Background(), bytes.NewReader(pdf), int64(len(pdf)), 0)
	if err != nil {
		t.Fatalf("valid large PDF refused: %v", err)
	}
	if info.Pages != nil || info.Encrypted {
		t.Fatalf("info = %+v", info)
	}
	// Junk before the header shifts every offset; still accepted.
	junk := append([]byte("\xef\xbb\xbfjunk"), pdf...)
	if _, err := checkPDF(context.Background(), bytes.NewReader(junk), int64(len(junk)), 7); err != nil {
		t.Fatalf("large PDF with junk before the header refused: %v", err)
	}
	cut := pdf[:len(pdf)-200]
	if _, err := checkPDF(context.Background(), bytes.NewReader(cut), int64(len(cut)), 0); err == nil {
		t.Fatal("truncated large PDF accepted")
	}
	enc := bytes.Replace(pdf, []byte("/Info 3 0 R >>\nstartxref"), []byte("/Info 3 0 R /Encrypt 3 0 R >>\nstartxref"), 1)
	// The startxref offset is unchanged (the trailer follows the table).
	info, err = checkPDF(context.Background(), bytes.NewReader(enc), int64(len(enc)), 0)
	if err != nil || !info.Encrypted {
		t.Fatalf("encrypted large PDF: info %+v, err %v", info, err)
	}
	notPDF := append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte{0}, fullCheckMaxBytes+10)...)
	if _, err := checkPDF(context.Background(), bytes.NewReader(notPDF), int64(len(notPDF)), 0); err == nil {
		t.Fatal("a PDF header followed by zeros was accepted")
	}
}
