package model

import (
	"os"
	"testing"

	"persona/sample"
)

func BenchmarkZZDecode(b *testing.B) {
	m, err := Load(os.Getenv("ZZ_MODEL"))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ids := []int{1, 2, 3, 4, 5, 6, 7, 8}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := m.NewState()
		logits := m.Forward(s, ids, nil, LastLogits)
		for range 32 {
			logits = m.Forward(s, []int{sample.Argmax(logits)}, nil, LastLogits)
		}
	}
}
