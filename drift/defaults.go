package drift

import "embed"

//go:embed scenarios/*.yaml
var shipped embed.FS

// DefaultScenarios returns the shipped scenarios for real models
// (scenarios/default.yaml): two scripted eight-turn conversations per
// domain.
func DefaultScenarios() ([]Scenario, error) {
	data, err := shipped.ReadFile("scenarios/default.yaml")
	if err != nil {
		return nil, err
	}
	return ParseScenarios(data, "drift/scenarios/default.yaml")
}
