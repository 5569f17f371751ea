package pidf

import (
	"slices"

	"github.com/beevik/etree"
)

// Compose merges a presentity's live publications into the document a presence agent
// sends its watchers. docs are ordered oldest to newest; nil entries are skipped. The
// result has entity as its entity and holds, in this order:
//
//   - tuples: the union of the docs' tuples by id; for an id found in several docs the
//     newest doc's tuple wins. Tuples keep the position of the first appearance of their
//     id (oldest doc first, document order within a doc), so the order is stable while
//     publications are refreshed.
//   - top-level <note> elements of the newest doc that has any.
//   - <dm:person> elements of the newest doc that has any.
//   - <dm:device> elements, by id like tuples.
//   - other top-level elements (extensions): for each element name (namespace and local
//     name), the elements of that name in the newest doc that has one, in order of first
//     appearance of the name.
//
// Which publications to pass is the caller's business: replacing a publication by its
// entity tag (linphone draws a new tuple id for every PUBLISH) or keeping stale
// duplicates (baresip) happens before. The newest-wins rule hides a stale duplicate of a
// tuple id.
//
// Elements are copied with their namespace prefixes unchanged. A prefix a copied element
// uses is declared on the root of the result when it is free there or bound to the same
// namespace, and otherwise on the copied element itself. Compose does not modify docs.
// Compose with no doc returns a document without tuple (which Parse would refuse).
func Compose(entity string, docs ...*Document) *Document {
	out := New(entity)
	c := composer{root: out.root, scope: make([]string, 0, 8), used: make([]string, 0, 8)}
	kids := make([][]child, len(docs))
	for i, d := range docs {
		if d != nil {
			kids[i] = children(d.root)
		}
	}
	c.byID(kids, kindTuple)
	c.newest(kids, kindNote)
	c.newest(kids, kindPerson)
	c.byID(kids, kindDevice)
	c.extensions(kids)
	c.finish()
	return out
}

// child is an element child of <presence> with its kind.
type child struct {
	e    *etree.Element
	kind kind
}

func children(root *etree.Element) []child {
	out := make([]child, 0, len(root.Child)/2+1)
	for _, t := range root.Child {
		if e, ok := t.(*etree.Element); ok {
			out = append(out, child{e, kindOf(e)})
		}
	}
	return out
}

type composer struct {
	root  *etree.Element
	decls []binding // declarations to add to the root
	used  []string  // scratch: free prefixes of a subtree
	scope []string  // scratch: prefixes declared in a subtree
}

// byID adds the elements of kind k, by id attribute, the newest winning, in order of
// first appearance.
func (c *composer) byID(kids [][]child, k kind) {
	var ids []string
	var els []*etree.Element
	var index map[string]int // when many
	for _, cs := range kids {
		for _, ch := range cs {
			if ch.kind != k {
				continue
			}
			id, _ := attr(ch.e, "", "id")
			i := -1
			if index != nil {
				if j, ok := index[id]; ok {
					i = j
				}
			} else {
				i = slices.Index(ids, id)
			}
			if i >= 0 {
				els[i] = ch.e
				continue
			}
			ids = append(ids, id)
			els = append(els, ch.e)
			if index != nil {
				index[id] = len(ids) - 1
			} else if len(ids) > 16 {
				index = make(map[string]int, 2*len(ids))
				for j, id := range ids {
					index[id] = j
				}
			}
		}
	}
	for _, e := range els {
		c.add(e)
	}
}

// newest adds the elements of kind k of the newest doc that has any.
func (c *composer) newest(kids [][]child, k kind) {
	for i := len(kids) - 1; i >= 0; i-- {
		found := false
		for _, ch := range kids[i] {
			if ch.kind == k {
				c.add(ch.e)
				found = true
			}
		}
		if found {
			return
		}
	}
}

// extensions adds the other elements, per name from the newest doc that has that name.
func (c *composer) extensions(kids [][]child) {
	type name struct{ space, local string }
	var names []name
	var from []int
	for i, cs := range kids {
		for _, ch := range cs {
			if ch.kind != kindOther {
				continue
			}
			n := name{nsURI(ch.e), ch.e.Tag}
			if j := slices.Index(names, n); j >= 0 {
				from[j] = i
			} else {
				names = append(names, n)
				from = append(from, i)
			}
		}
	}
	for j, n := range names {
		for _, ch := range kids[from[j]] {
			if ch.kind == kindOther && ch.e.Tag == n.local && nsURI(ch.e) == n.space {
				c.add(ch.e)
			}
		}
	}
}

// add appends a copy of src to the result, declaring the prefixes it needs.
func (c *composer) add(src *etree.Element) {
	cp := src.Copy()
	c.used = c.freePrefixes(src, c.scope[:0], c.used[:0])
	parent := src.Parent()
	for _, p := range c.used {
		uri, ok := lookupNS(parent, p)
		if !ok {
			continue // cannot happen in a document that parsed
		}
		if bound, ok := c.lookupRoot(p); ok {
			if bound == uri {
				continue
			}
			// Bound to another namespace on the root: declare on the copy.
			key := "xmlns"
			if p != "" {
				key += ":" + p
			}
			cp.CreateAttr(key, uri)
			n := len(cp.Attr)
			a := cp.Attr[n-1]
			copy(cp.Attr[1:], cp.Attr[:n-1])
			cp.Attr[0] = a
			continue
		}
		c.decls = append(c.decls, binding{p, uri})
	}
	c.root.AddChild(etree.NewText(indent))
	c.root.AddChild(cp)
}

// lookupRoot returns the binding of prefix on the result's root.
func (c *composer) lookupRoot(prefix string) (string, bool) {
	if prefix == "" {
		return Namespace, true
	}
	for _, b := range c.decls {
		if b.prefix == prefix {
			return b.uri, true
		}
	}
	return "", false
}

// freePrefixes appends to used the prefixes e's subtree uses without declaring them
// ("" for the default namespace), in order of first use.
func (c *composer) freePrefixes(e *etree.Element, scope, used []string) []string {
	for i := range e.Attr {
		a := &e.Attr[i]
		if a.Space == "xmlns" {
			scope = append(scope, a.Key)
		} else if a.Space == "" && a.Key == "xmlns" {
			scope = append(scope, "")
		}
	}
	used = usePrefix(e.Space, scope, used)
	for i := range e.Attr {
		if s := e.Attr[i].Space; s != "" && s != "xmlns" {
			used = usePrefix(s, scope, used)
		}
	}
	for _, t := range e.Child {
		if ce, ok := t.(*etree.Element); ok {
			used = c.freePrefixes(ce, scope, used)
		}
	}
	return used
}

func usePrefix(p string, scope, used []string) []string {
	if p == "xml" || slices.Contains(scope, p) || slices.Contains(used, p) {
		return used
	}
	return append(used, p)
}

// finish declares the collected prefixes on the root, before entity, and closes the
// layout.
func (c *composer) finish() {
	if len(c.decls) > 0 {
		entity, _ := attr(c.root, "", "entity")
		c.root.RemoveAttr("entity")
		for _, b := range c.decls {
			c.root.CreateAttr("xmlns:"+b.prefix, b.uri)
		}
		c.root.CreateAttr("entity", entity)
	}
	if len(c.root.Child) > 0 {
		c.root.AddChild(etree.NewText("\n"))
	}
}
