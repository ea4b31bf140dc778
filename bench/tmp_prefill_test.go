package bench

import (
	"os"
	"testing"
)

func BenchmarkTmpDecode(b *testing.B) {
	for i := 0; i < b.N; i++ {
		r, err := TimeEngine(os.Getenv("MODEL"), 2, 8, 32)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.DecodeTokS, "decode-tok/s")
	}
}
