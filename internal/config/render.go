package config

import (
	"bytes"
	"reflect"
	"slices"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// masked replaces secrets in YAML output.
const masked = "***"

// YAML renders the options as a YAML configuration file, every key present, in the order of
// the Options fields. It is what -t prints. Parse reads it back to the same Options, except
// that secrets are never printed: the password of the store URL and auth.nonce_secret show as
// "***".
func (o Options) YAML() string {
	o.Store = o.RedactedStore()
	if o.Auth.NonceSecret != "" {
		o.Auth.NonceSecret = masked
	}
	o.Proxy.Routes = slices.Clone(o.Proxy.Routes)
	for i := range o.Proxy.Routes {
		if o.Proxy.Routes[i].Auth.Password != "" {
			o.Proxy.Routes[i].Auth.Password = masked
		}
	}
	doc := &yaml.Node{
		Kind:        yaml.DocumentNode,
		HeadComment: "simpled effective configuration",
		Content:     []*yaml.Node{renderStruct(reflect.ValueOf(o), optionFields)},
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		// Encoding a tree of plain scalars cannot fail; say so loudly if it ever does.
		panic("config: render yaml: " + err.Error())
	}
	if err := enc.Close(); err != nil {
		panic("config: render yaml: " + err.Error())
	}
	return b.String()
}

func renderStruct(v reflect.Value, fields []field) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, f := range fields {
		fv := v.FieldByIndex(f.index)
		key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f.key}
		var val *yaml.Node
		switch {
		case f.children != nil:
			val = renderStruct(fv, f.children)
		case f.typ == durationType:
			val = str(time.Duration(fv.Int()).String())
		case f.typ.Kind() == reflect.String:
			val = str(fv.String())
		case f.typ.Kind() == reflect.Int:
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(fv.Int(), 10)}
		case f.typ.Kind() == reflect.Float64:
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: strconv.FormatFloat(fv.Float(), 'g', -1, 64)}
		case f.typ.Kind() == reflect.Bool:
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(fv.Bool())}
		case f.typ.Kind() == reflect.Slice:
			val = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for i := 0; i < fv.Len(); i++ {
				if f.elem != nil {
					val.Content = append(val.Content, renderStruct(fv.Index(i), f.elem))
					continue
				}
				val.Content = append(val.Content, str(fv.Index(i).String()))
			}
			if fv.Len() == 0 {
				val.Style = yaml.FlowStyle // "[]"
			}
		default:
			panic("config: render yaml: no encoder for " + f.typ.String())
		}
		m.Content = append(m.Content, key, val)
	}
	return m
}

// str is a string scalar; the encoder quotes it when it would otherwise read back as another
// type ("true", "5060", "").
func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
