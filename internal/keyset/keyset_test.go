package keyset

import "testing"

func set(ks ...string) map[string]struct{} {
	m := make(map[string]struct{}, len(ks))
	for _, k := range ks {
		m[k] = struct{}{}
	}
	return m
}

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b map[string]struct{}
		want bool
	}{
		{set(), set(), false},
		{set("a"), set(), false},
		{set("a"), set("b"), false},
		{set("a"), set("a"), true},
		{set("a", "b", "c"), set("c"), true},
		{set("x"), set("a", "b", "x"), true},
		{set("a", "b"), set("c", "d", "e"), false},
		{set("", "\x00"), set("\x00"), true},
	} {
		if got := Overlap(tc.a, tc.b); got != tc.want {
			t.Errorf("Overlap(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := Overlap(tc.b, tc.a); got != tc.want {
			t.Errorf("Overlap(%v, %v) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}
