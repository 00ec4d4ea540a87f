package config

import "errors"

// ValidatePromotions runs the loader's promotions check on promotions with their defaults applied, as config
// check would.
func ValidatePromotions(promotions []Promotion, registries []Registry) ([]Promotion, error) {
	for i := range promotions {
		promotions[i].setDefaults()
	}
	l := &loader{file: "harborflow.yaml", scope: scope{all: true}, lines: map[string]int{}, unsetKeys: map[string]bool{}}
	l.validatePromotions(promotions, registries)
	return promotions, errors.Join(l.errs...)
}
