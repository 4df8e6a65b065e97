package podagents

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
)

// userPlaceholder is what "{user}" becomes in a template.
const userPlaceholder = "{user}"

// sentinel stands for the user while a selector template is parsed: a
// valid label value that no real requirement uses.
const sentinel = "upgate-user-sentinel-0"

// selectorTemplate is a label selector with "{user}" in it.
type selectorTemplate struct {
	text   string
	parsed labels.Selector // with sentinel for {user}
}

// parseSelectorTemplate checks that text is a label selector once
// "{user}" is filled in.
func parseSelectorTemplate(text string) (*selectorTemplate, error) {
	sel, err := labels.Parse(strings.ReplaceAll(text, userPlaceholder, sentinel))
	if err != nil {
		return nil, fmt.Errorf("podagents: selector %q: %w", text, err)
	}
	return &selectorTemplate{text: text, parsed: sel}, nil
}

// expand returns the selector for user.
func (t *selectorTemplate) expand(user string) (labels.Selector, error) {
	sel, err := labels.Parse(strings.ReplaceAll(t.text, userPlaceholder, user))
	if err != nil {
		return nil, fmt.Errorf("podagents: selector %q for user %q: %w", t.text, user, err)
	}
	return sel, nil
}

// watchSelector is the selector the informers list and watch with: the
// template's requirements that do not depend on the user, plus "the key
// exists" for those that name the user as a value, so that the cache holds
// the candidates of every user and nothing else.
func (t *selectorTemplate) watchSelector() string {
	reqs, _ := t.parsed.Requirements()
	var out []string
	for _, r := range reqs {
		if strings.Contains(r.Key(), sentinel) {
			return "" // a key made of the user name: watch everything
		}
		var user bool
		for _, v := range r.ValuesUnsorted() {
			if strings.Contains(v, sentinel) {
				user = true
			}
		}
		if !user {
			out = append(out, r.String())
			continue
		}
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			out = append(out, r.Key())
		}
		// != and notin with the user: every other pod may match.
	}
	return strings.Join(out, ",")
}

// expandNamespace returns the namespace of user, checked to be a DNS label.
func expandNamespace(template, user string) (string, error) {
	ns := strings.ReplaceAll(template, userPlaceholder, user)
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		if ns != template {
			return "", fmt.Errorf("podagents: namespace %q for user %q: %q is not a namespace name: %s", template, user, ns, strings.Join(errs, "; "))
		}
		return "", fmt.Errorf("podagents: namespace %q is not a namespace name: %s", template, strings.Join(errs, "; "))
	}
	return ns, nil
}
