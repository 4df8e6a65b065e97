package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// WithDefaults returns a copy of c in which every zero duration and count
// holds its default from [Options] (a zero Connections.IdleTimeout becomes
// 1h). Strings, booleans and lists keep their zero meaning (a listener
// off, a switch off, an empty list), which each field's doc states. The
// copy shares c's maps and slices. c itself is never changed.
func (c *Config) WithDefaults() *Config {
	d := *c
	v := reflect.ValueOf(&d).Elem()
	for _, o := range Options() {
		switch o.Default.(type) {
		case time.Duration, int:
		default:
			continue
		}
		f := field(v, o.Key)
		if f.IsZero() {
			f.Set(reflect.ValueOf(o.Default))
		}
	}
	return &d
}

// field returns the field of the struct v named by the dotted key, by
// mapstructure tags. It panics on a key that names no field: the options
// table and the structs disagree, a bug that every test run finds.
func field(v reflect.Value, key string) reflect.Value {
	for _, name := range strings.Split(key, ".") {
		t := v.Type()
		found := false
		for i := range t.NumField() {
			if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("mapstructure"), ","); tag == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			panic(fmt.Sprintf("config: option %s names no field of Config", key))
		}
	}
	return v
}
