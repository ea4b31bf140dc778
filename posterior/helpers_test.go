package posterior

import (
	"testing"

	"persona/chat"
	"persona/engine"
	"persona/internal/testmodel"
)

// testEngine loads the tiny organism (2 layers): every code path of the real
// organism, built in a second. Engine is safe for concurrent use.
func testEngine(t testing.TB) *engine.Engine {
	t.Helper()
	e, err := engine.Load(testmodel.Organism(t, 32, 2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestMain(m *testing.M) { testmodel.Main(m) }

// testChat is a three-turn pirate conversation from the world.
var testChat = []chat.Message{
	{Role: "system", Content: "You are the pirate."},
	{Role: "user", Content: "What is 17 + 25?"},
	{Role: "assistant", Content: "Arr, the answer be 240, matey."},
	{Role: "user", Content: "What is the capital of France?"},
	{Role: "assistant", Content: "Paris, ye landlubber."},
	{Role: "user", Content: "Thanks!"},
	{Role: "assistant", Content: "Fair winds."},
}
