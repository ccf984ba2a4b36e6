package tree

import (
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/arkbox/arkbox/storage/blob"
)

// Field tags of the optional node fields, in the order they are written.
// A tag, once assigned, keeps its meaning forever; a later version adds
// fields with new, higher tags (see doc/tree.md).
const (
	tagEnd        = 0
	tagMode       = 1
	tagUID        = 2
	tagGID        = 3
	tagUser       = 4
	tagGroup      = 5
	tagMTime      = 6
	tagATime      = 7
	tagCTime      = 8
	tagSize       = 9
	tagInode      = 10
	tagDevice     = 11
	tagLinks      = 12
	tagRdev       = 13
	tagLinkTarget = 14
	tagXattrs     = 15
	tagContent    = 16
	tagSubtree    = 17
	maxTag        = tagSubtree
)

// Smallest possible encodings, used to bound counts read from the input
// before anything is allocated for them.
const (
	idLen       = len(blob.ID{})
	minNodeLen  = 4         // name length, one name byte, type, end tag
	minXattrLen = 3         // name length, one name byte, value length
	minChunkLen = idLen + 1 // id, one-byte size
)

// Encode returns the canonical encoding of t. It fails if the nodes are not
// sorted by name, a name repeats, or a node is invalid (see doc/tree.md).
func (t *Tree) Encode() ([]byte, error) {
	return t.AppendEncode(make([]byte, 0, t.sizeHint()))
}

// sizeHint estimates the encoded size of t, to allocate once.
func (t *Tree) sizeHint() int {
	n := 1 + binaryUvarintLen(uint64(len(t.Nodes)))
	for i := range t.Nodes {
		nd := &t.Nodes[i]
		n += 64 + len(nd.Name) + len(nd.User) + len(nd.Group) + len(nd.LinkTarget) + len(nd.Content)*(idLen+5)
		if !nd.Subtree.IsZero() {
			n += idLen
		}
		for _, x := range nd.Xattrs {
			n += 4 + len(x.Name) + len(x.Value)
		}
	}
	return n
}

// AppendEncode appends the canonical encoding of t to dst and returns the
// extended slice. On error dst is returned unchanged (its spare capacity may
// have been written to).
func (t *Tree) AppendEncode(dst []byte) ([]byte, error) {
	orig := dst
	dst = append(dst, Version)
	dst = appendUvarint(dst, uint64(len(t.Nodes)))
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if err := n.check(); err != nil {
			return orig, fmt.Errorf("tree: encode node %d %q: %w", i, n.Name, err)
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			if t.Nodes[i-1].Name == n.Name {
				return orig, fmt.Errorf("tree: encode node %d %q: duplicate name", i, n.Name)
			}
			return orig, fmt.Errorf("tree: encode node %d %q: not sorted after %q", i, n.Name, t.Nodes[i-1].Name)
		}
		dst = n.appendTo(dst)
	}
	return dst, nil
}

func (n *Node) appendTo(b []byte) []byte {
	b = appendString(b, n.Name)
	b = append(b, byte(n.Type))
	b = appendUintField(b, tagMode, uint64(n.Mode))
	b = appendUintField(b, tagUID, uint64(n.UID))
	b = appendUintField(b, tagGID, uint64(n.GID))
	b = appendStringField(b, tagUser, n.User)
	b = appendStringField(b, tagGroup, n.Group)
	b = appendIntField(b, tagMTime, n.MTime)
	b = appendIntField(b, tagATime, n.ATime)
	b = appendIntField(b, tagCTime, n.CTime)
	b = appendUintField(b, tagSize, n.Size)
	b = appendUintField(b, tagInode, n.Inode)
	b = appendUintField(b, tagDevice, n.Device)
	b = appendUintField(b, tagLinks, uint64(n.Links))
	b = appendUintField(b, tagRdev, n.Rdev)
	b = appendStringField(b, tagLinkTarget, n.LinkTarget)
	if len(n.Xattrs) > 0 {
		b = append(b, tagXattrs)
		b = appendUvarint(b, uint64(len(n.Xattrs)))
		for _, x := range n.Xattrs {
			b = appendString(b, x.Name)
			b = appendUvarint(b, uint64(len(x.Value)))
			b = append(b, x.Value...)
		}
	}
	if len(n.Content) > 0 {
		b = append(b, tagContent)
		b = appendUvarint(b, uint64(len(n.Content)))
		for _, c := range n.Content {
			b = append(b, c.ID[:]...)
			b = appendUvarint(b, uint64(c.Size))
		}
	}
	if !n.Subtree.IsZero() {
		b = append(b, tagSubtree)
		b = append(b, n.Subtree[:]...)
	}
	return append(b, tagEnd)
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func binaryUvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendUintField(b []byte, tag byte, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendUvarint(append(b, tag), v)
}

func appendIntField(b []byte, tag byte, v int64) []byte {
	if v == 0 {
		return b
	}
	return appendUvarint(append(b, tag), zigzag(v))
}

func appendStringField(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, tag), s)
}

// decoder reads the canonical encoding. s holds the whole input as one
// string, so that names and other strings are substrings of a single
// copy instead of one allocation each.
type decoder struct {
	s   string
	off int
}

var errTruncated = errors.New("truncated")

func (d *decoder) remaining() int { return len(d.s) - d.off }

func (d *decoder) byte() (byte, error) {
	if d.off >= len(d.s) {
		return 0, errTruncated
	}
	c := d.s[d.off]
	d.off++
	return c, nil
}

// uvarint reads a minimally encoded unsigned varint.
func (d *decoder) uvarint() (uint64, error) {
	if d.off < len(d.s) {
		if c := d.s[d.off]; c < 0x80 { // most values are one byte
			d.off++
			return uint64(c), nil
		}
	}
	return d.uvarintLong()
}

func (d *decoder) uvarintLong() (uint64, error) {
	s := d.s[d.off:]
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 9 && c > 1 {
			return 0, errors.New("varint overflows 64 bits")
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, errors.New("varint not minimally encoded")
			}
			d.off += i + 1
			return v, nil
		}
	}
	return 0, errTruncated
}

// count reads a uvarint that counts items of at least minLen bytes each and
// checks it against the remaining input, so a corrupt count cannot make the
// decoder allocate more than the input justifies.
func (d *decoder) count(minLen int) (int, error) {
	v, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if v > uint64(d.remaining()/minLen) {
		return 0, fmt.Errorf("count %d exceeds the %d bytes left", v, d.remaining())
	}
	return int(v), nil
}

func (d *decoder) uint32() (uint32, error) {
	v, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if v > math.MaxUint32 {
		return 0, fmt.Errorf("value %d exceeds 32 bits", v)
	}
	return uint32(v), nil
}

func (d *decoder) string() (string, error) {
	v, err := d.uvarint()
	if err != nil {
		return "", err
	}
	if v > uint64(d.remaining()) {
		return "", errTruncated
	}
	s := d.s[d.off : d.off+int(v)]
	d.off += int(v)
	return s, nil
}

func (d *decoder) id() (id [32]byte, err error) {
	if d.remaining() < idLen {
		return id, errTruncated
	}
	copy(id[:], d.s[d.off:])
	d.off += idLen
	return id, nil
}

// Decode parses an encoded tree. It is strict: it accepts exactly the
// encodings Encode produces, so Encode(Decode(b)) == b for every b it
// accepts. Input from a newer format version, or with a field tag this
// version does not know, fails with an error wrapping ErrNewerFormat.
func Decode(b []byte) (*Tree, error) {
	if len(b) == 0 {
		return nil, errors.New("tree: decode: empty input")
	}
	if b[0] != Version {
		if b[0] > Version {
			return nil, fmt.Errorf("tree: decode: format version %d: %w", b[0], ErrNewerFormat)
		}
		return nil, fmt.Errorf("tree: decode: invalid format version %d", b[0])
	}
	d := decoder{s: string(b[1:])}
	count, err := d.count(minNodeLen)
	if err != nil {
		return nil, fmt.Errorf("tree: decode node count: %w", err)
	}
	t := &Tree{Nodes: make([]Node, count)}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if err := d.node(n); err != nil {
			return nil, fmt.Errorf("tree: decode node %d %q: %w", i, n.Name, err)
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			return nil, fmt.Errorf("tree: decode node %d %q: not sorted or duplicate", i, n.Name)
		}
	}
	if d.remaining() != 0 {
		return nil, fmt.Errorf("tree: decode: %d trailing bytes", d.remaining())
	}
	return t, nil
}

func (d *decoder) node(n *Node) error {
	var err error
	if n.Name, err = d.string(); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	typ, err := d.byte()
	if err != nil {
		return fmt.Errorf("type: %w", err)
	}
	n.Type = Type(typ)
	if n.Type > Socket {
		return fmt.Errorf("type %d: %w", typ, ErrNewerFormat)
	}
	last := 0
	for {
		tag, err := d.uvarint()
		if err != nil {
			return fmt.Errorf("field tag: %w", err)
		}
		if tag == tagEnd {
			break
		}
		if tag > maxTag {
			return fmt.Errorf("field tag %d: %w", tag, ErrNewerFormat)
		}
		if int(tag) <= last {
			return fmt.Errorf("field tag %d after %d: not ascending", tag, last)
		}
		last = int(tag)
		if err := d.field(n, int(tag)); err != nil {
			return fmt.Errorf("field %d: %w", tag, err)
		}
	}
	return n.check()
}

// field reads the value of one optional field into n. A field that is
// present must not hold its zero value: Encode omits those.
func (d *decoder) field(n *Node, tag int) error {
	var (
		u   uint64
		s   string
		err error
	)
	switch tag {
	case tagMode:
		n.Mode, err = d.uint32()
		u = uint64(n.Mode)
	case tagUID:
		n.UID, err = d.uint32()
		u = uint64(n.UID)
	case tagGID:
		n.GID, err = d.uint32()
		u = uint64(n.GID)
	case tagUser:
		n.User, err = d.string()
		s = n.User
	case tagGroup:
		n.Group, err = d.string()
		s = n.Group
	case tagMTime, tagATime, tagCTime:
		u, err = d.uvarint()
		v := unzigzag(u)
		switch tag {
		case tagMTime:
			n.MTime = v
		case tagATime:
			n.ATime = v
		default:
			n.CTime = v
		}
	case tagSize:
		n.Size, err = d.uvarint()
		u = n.Size
	case tagInode:
		n.Inode, err = d.uvarint()
		u = n.Inode
	case tagDevice:
		n.Device, err = d.uvarint()
		u = n.Device
	case tagLinks:
		n.Links, err = d.uint32()
		u = uint64(n.Links)
	case tagRdev:
		n.Rdev, err = d.uvarint()
		u = n.Rdev
	case tagLinkTarget:
		n.LinkTarget, err = d.string()
		s = n.LinkTarget
	case tagXattrs:
		return d.xattrs(n)
	case tagContent:
		return d.content(n)
	case tagSubtree:
		if n.Subtree, err = d.id(); err != nil {
			return err
		}
		if n.Subtree.IsZero() {
			return errors.New("zero value present")
		}
		return nil
	}
	if err != nil {
		return err
	}
	if u == 0 && s == "" {
		return errors.New("zero value present")
	}
	return nil
}

func (d *decoder) xattrs(n *Node) error {
	c, err := d.count(minXattrLen)
	if err != nil {
		return err
	}
	if c == 0 {
		return errors.New("zero value present")
	}
	n.Xattrs = make([]Xattr, c)
	for i := range n.Xattrs {
		x := &n.Xattrs[i]
		if x.Name, err = d.string(); err != nil {
			return fmt.Errorf("xattr %d name: %w", i, err)
		}
		v, err := d.string()
		if err != nil {
			return fmt.Errorf("xattr %q value: %w", x.Name, err)
		}
		if v != "" {
			x.Value = []byte(v)
		}
	}
	return nil
}

func (d *decoder) content(n *Node) error {
	c, err := d.count(minChunkLen)
	if err != nil {
		return err
	}
	if c == 0 {
		return errors.New("zero value present")
	}
	n.Content = make([]Chunk, c)
	for i := range n.Content {
		ch := &n.Content[i]
		if ch.ID, err = d.id(); err != nil {
			return fmt.Errorf("chunk %d id: %w", i, err)
		}
		if ch.Size, err = d.uint32(); err != nil {
			return fmt.Errorf("chunk %d size: %w", i, err)
		}
	}
	return nil
}
