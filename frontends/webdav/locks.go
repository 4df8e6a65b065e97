package webdav

import (
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dav "golang.org/x/net/webdav"
)

// errTooManyLocks refuses a LOCK beyond Config.MaxLocks (503).
var errTooManyLocks = errors.New("webdav: too many locks")

// lockSystems holds each user's locks: a user's paths are their own
// namespace, so their locks never meet another user's. They live in this
// process's memory only.
type lockSystems struct {
	max         int
	maxDuration time.Duration

	// mu guards byUser, which grows by one entry per user who logged in.
	mu     sync.Mutex
	byUser map[string]*userLocks
}

func newLockSystems(max int, maxDuration time.Duration) *lockSystems {
	return &lockSystems{max: max, maxDuration: maxDuration, byUser: make(map[string]*userLocks)}
}

// forUser returns user's lock system, made on first use.
func (l *lockSystems) forUser(user string) *userLocks {
	l.mu.Lock()
	defer l.mu.Unlock()
	u, ok := l.byUser[user]
	if !ok {
		u = &userLocks{LockSystem: dav.NewMemLS(), user: user, max: l.max, maxDuration: l.maxDuration, held: make(map[string]heldLock)}
		l.byUser[user] = u
	}
	return u
}

// userLocks is x/net/webdav's in-memory lock system with every lock's
// duration capped (a lock asked for "Infinite" lasts maxDuration; a client
// that vanished leaves nothing locked for longer) and at most max locks
// held at once.
//
// x/net/webdav takes a temporary exclusive lock on the paths of every
// write that brings no If header, for the write's duration: two such
// writes of one path at once (rclone's parallel transfers creating the
// same parent collection, an editor saving twice over two connections)
// then fail with 423 Locked, which no client expects of writes that asked
// for no lock. Here such a write only checks that no client holds a lock
// on its paths: writes without locks do not exclude each other, as on
// any filesystem, and a client's LOCK still excludes them.
type userLocks struct {
	dav.LockSystem
	user        string
	max         int
	maxDuration time.Duration

	// mu guards held: each lock held, by token.
	mu   sync.Mutex
	held map[string]heldLock
}

// heldLock is what userLocks keeps of a client's lock.
type heldLock struct {
	root      string // the locked path, cleaned
	zeroDepth bool
	end       time.Time
	// active is the lock's activelock element for lockdiscovery, made
	// once when it is taken.
	active activeXML
}

// covers reports whether l, live at now, locks p: p is its root, or lies
// below an infinite one.
func (l heldLock) covers(now time.Time, p string) bool {
	return now.Before(l.end) && (l.root == p || !l.zeroDepth && inside(p, l.root))
}

func (u *userLocks) capped(d time.Duration) time.Duration {
	if d < 0 || d > u.maxDuration {
		return u.maxDuration
	}
	return d
}

// unlockedWrite is the token Create returns for a write that holds no
// lock; Unlock accepts it and does nothing.
const unlockedWrite = "urn:upgate:unlocked-write"

// Create implements dav.LockSystem. x/net/webdav's temporary locks are
// the ones with an infinite duration: every client LOCK reaches here with
// a finite one (Server.check rewrites its Timeout header).
func (u *userLocks) Create(now time.Time, details dav.LockDetails) (string, error) {
	temporary := details.Duration < 0
	details.Duration = u.capped(details.Duration)
	if temporary {
		u.mu.Lock()
		defer u.mu.Unlock()
		tok, err := u.LockSystem.Create(now, details)
		if err != nil {
			return "", err // a client's lock: 423
		}
		_ = u.LockSystem.Unlock(now, tok)
		return unlockedWrite, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for tok, l := range u.held {
		if !now.Before(l.end) {
			delete(u.held, tok)
		}
	}
	if len(u.held) >= u.max {
		return "", fmt.Errorf("%w: user %s holds %d (at most %d at once); UNLOCK some or wait for them to expire", errTooManyLocks, u.user, len(u.held), u.max)
	}
	tok, err := u.LockSystem.Create(now, details)
	if err == nil {
		root := cleanPath(details.Root)
		u.held[tok] = heldLock{root: root, zeroDepth: details.ZeroDepth, end: now.Add(details.Duration),
			active: newActiveXML(tok, root, details.ZeroDepth, details.OwnerXML)}
	}
	return tok, err
}

// Refresh implements dav.LockSystem.
// The two refreshes are one under u.mu: a Create between them, its
// clock past the lock's old end, would forget the lock that memLS has
// just renewed, and every request with its token would fail confirm (a
// review).
func (u *userLocks) Refresh(now time.Time, token string, duration time.Duration) (dav.LockDetails, error) {
	duration = u.capped(duration)
	u.mu.Lock()
	defer u.mu.Unlock()
	ld, err := u.LockSystem.Refresh(now, token, duration)
	if err == nil {
		if l, ok := u.held[token]; ok {
			l.end = now.Add(duration)
			u.held[token] = l
		}
	}
	return ld, err
}

// activeXML is a lock's activelock element (RFC 4918 14.1), as
// x/net/webdav's LOCK answer gives it (type, scope, depth, owner,
// timeout, token, root), around its timeout's seconds.
type activeXML struct{ head, tail string }

// newActiveXML is the activelock of the lock tok on root. Its root is the
// URL path, as the answers' hrefs are.
func newActiveXML(tok, root string, zeroDepth bool, owner string) activeXML {
	depth := "infinity"
	if zeroDepth {
		depth = "0"
	}
	return activeXML{
		head: "<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope><D:exclusive/></D:lockscope>" +
			"<D:depth>" + depth + "</D:depth>" + ownerXML(owner) + "<D:timeout>Second-",
		tail: "</D:timeout><D:locktoken><D:href>" + escapeXML(tok) + "</D:href></D:locktoken>" +
			"<D:lockroot><D:href>" + hrefText(root) + "</D:href></D:lockroot></D:activelock>",
	}
}

// write writes the element with secs seconds left.
func (a activeXML) write(b *strings.Builder, secs int64) {
	b.WriteString(a.head)
	b.WriteString(strconv.FormatInt(secs, 10))
	b.WriteString(a.tail)
}

// maxOwner bounds the owner text lockdiscovery repeats for every
// resource a lock covers; the rest is cut (a LOCK's body may hold much
// more, which a Depth 1 listing of a locked collection would send once
// per member).
const maxOwner = 1024

// ownerXML is a lock's owner element for lockdiscovery, from what the
// LOCK body held: its text, or the text of the one href it held and
// nothing else (Windows, Office and cadaver send <D:href>), at most
// maxOwner bytes; "" for none. The body's markup is not copied: its
// prefixes were declared in the LOCK's body, not in this answer, and an
// undeclared one would make the whole multistatus unreadable, a Depth 1
// listing included.
func ownerXML(inner string) string {
	if strings.TrimSpace(inner) == "" {
		return ""
	}
	d := xml.NewDecoder(strings.NewReader("<owner>" + inner + "</owner>"))
	d.Strict = false
	var text, outside strings.Builder
	depth, elems, hrefs := 0, 0, 0
	for text.Len() <= maxOwner {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if elems++; depth == 2 && t.Name.Local == "href" {
				hrefs++
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			text.Write(t)
			if depth == 1 {
				outside.Write(t)
			}
		}
	}
	s := strings.TrimSpace(text.String())
	if len(s) > maxOwner {
		s = strings.ToValidUTF8(s[:maxOwner], "")
	}
	if hrefs == 1 && elems == 2 && strings.TrimSpace(outside.String()) == "" {
		return "<D:owner><D:href>" + escapeXML(s) + "</D:href></D:owner>"
	}
	return "<D:owner>" + escapeXML(s) + "</D:owner>"
}

// activeLock is a held lock as lockdiscovery reports it.
type activeLock struct {
	token string
	heldLock
}

// active returns the locks live at now that cover p (rooted at p, or
// infinite ones above it), by root and then token.
func (u *userLocks) active(now time.Time, p string) []activeLock {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []activeLock
	for tok, l := range u.held {
		if l.covers(now, p) {
			out = append(out, activeLock{token: tok, heldLock: l})
		}
	}
	slices.SortFunc(out, func(a, b activeLock) int {
		return cmp.Or(strings.Compare(a.root, b.root), strings.Compare(a.token, b.token))
	})
	return out
}

// Unlock implements dav.LockSystem.
func (u *userLocks) Unlock(now time.Time, token string) error {
	if token == unlockedWrite {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	err := u.LockSystem.Unlock(now, token)
	if err == nil || errors.Is(err, dav.ErrNoSuchLock) {
		delete(u.held, token)
	}
	return err
}

// requestLocks is a user's locks as one request meets them. It adds what
// RFC 4918 7.5 asks of locks on collections and x/net/webdav's memLS
// leaves out:
//
//   - A request that removes or replaces a path with all it holds (a
//     DELETE, a MOVE's source and destination, a COPY's destination) is
//     refused (423) while anything below it holds a lock whose token the
//     request does not bring: memLS looks only at the path and above, so
//     a DELETE of a collection deleted the locked files in it.
//   - Adding a member to a collection or removing one (a DELETE, a MOVE's
//     source, a MKCOL, and a PUT, COPY, MOVE or LOCK that makes a new
//     name) needs the token of a depth-0 lock on that collection, as it
//     needs that of an infinite one: a depth-0 lock on a collection
//     protects its membership. memLS knows only the infinite one; and a
//     request that brings the collection's token for a new member is let
//     through (memLS would answer 412: the token locks no such path).
//   - A lock a request confirms is not held for it (confirm): a refresh,
//     an UNLOCK and other requests with its token go on meanwhile.
//
// The tokens a request brings are every one its If header names, in
// whatever list, but under Not.
type requestLocks struct {
	*userLocks
	q      *request
	tokens []string
	// exists reports whether p names something now (one agent call,
	// made only where a depth-0 lock on its collection asks).
	exists func(p string) bool
	// etag is p's ETag, "" where p names nothing or a collection (one
	// agent call, made only for an If list with an entity tag); nil
	// matches no tag.
	etag func(p string) string
}

// forRequest returns user's lock system as the request q meets it; ifHdr
// is its If header.
func (l *lockSystems) forRequest(user string, q *request, ifHdr string, exists func(string) bool) *requestLocks {
	return &requestLocks{userLocks: l.forUser(user), q: q, tokens: submittedTokens(ifHdr), exists: exists}
}

// submittedTokens are the lock tokens an If header submits (RFC 4918
// 10.4.1): its state tokens, each a <...> inside a list's parentheses,
// but one under Not (which says the resource is not locked with it). A
// resource tag (a <URL> before a list) is none, nor is anything inside
// an entity tag's [...]: the header's text once counted every <...> in
// it, so that an ETag condition spelled with a lock's token submitted
// that token (a review).
func submittedTokens(ifHdr string) []string {
	var tokens []string
	inList, not := false, false
	for s := ifHdr; s != ""; {
		switch c := s[0]; {
		case c == '(':
			inList, not = true, false
			s = s[1:]
		case c == ')':
			inList = false
			s = s[1:]
		case c == '[':
			_, rest, ok := strings.Cut(s, "]")
			if !ok {
				return tokens
			}
			s, not = rest, false
		case c == '<':
			tok, rest, ok := strings.Cut(s[1:], ">")
			if !ok {
				return tokens
			}
			if inList && !not {
				tokens = append(tokens, tok)
			}
			s, not = rest, false
		case inList && (strings.HasPrefix(s, "Not") || strings.HasPrefix(s, "not") || strings.HasPrefix(s, "NOT")):
			not = true
			s = s[3:]
		default:
			s = s[1:]
		}
	}
	return tokens
}

// Create implements dav.LockSystem: a write's temporary lock, and a
// client's LOCK, after the checks of the type's doc.
func (r *requestLocks) Create(now time.Time, details dav.LockDetails) (string, error) {
	if err := r.check(now, cleanPath(details.Root)); err != nil {
		return "", err
	}
	return r.userLocks.Create(now, details)
}

// Confirm implements dav.LockSystem, for a request with an If header:
// x/net/webdav asks it of each of the header's lists in turn (RFC 4918
// 10.4: the lists are an OR), with the list's resource (its tag, or the
// Request-URI; "" for a COPY's untagged list) and the request's
// destination. A list's conditions are an AND: its Not and entity-tag
// conditions are asked of its resource here (x/net/webdav's memLS read
// neither, and took a list for an OR of its tokens: litmus's
// fail_complex_cond_put), its tokens by confirm.
func (r *requestLocks) Confirm(now time.Time, name0, name1 string, conditions ...dav.Condition) (func(), error) {
	res := name0
	if res == "" && r.q != nil {
		res = r.q.path
	}
	if !r.listHolds(now, cleanPath(res), conditions) {
		return nil, dav.ErrConfirmationFailed
	}
	tagged := ""
	for i, n := range []*string{&name0, &name1} {
		if *n == "" {
			continue
		}
		p := cleanPath(*n)
		if i == 0 && r.q != nil && r.q.method != "COPY" && p != r.q.path {
			tagged = p
			// A tagged list (If: <url> (...)) names another resource:
			// x/net/webdav confirms it in place of the request's own
			// path, which no lock then guarded (a PUT or DELETE of a
			// locked path went through with the token of any other
			// lock). The request's path must pass here what memLS and
			// check would ask of it; the tagged one is only confirmed.
			if r.check(now, r.q.path) != nil || r.lockedByOther(now, r.q.path) {
				return nil, dav.ErrConfirmationFailed
			}
			continue
		}
		if err := r.check(now, p); err != nil {
			// The If header does not name the token this change needs:
			// 412 (x/net/webdav answers any other error 500).
			return nil, dav.ErrConfirmationFailed
		}
		switch {
		case r.byParentLock(now, p, conditions):
			*n = path.Dir(p) // hold the collection's lock for the write
		case i == 1 && !r.covered(now, p):
			// A MOVE's or COPY's destination that no lock covers: an
			// untagged list is the Request-URI's (RFC 4918 10.4.1), and
			// x/net/webdav asked it of the destination too, so that a
			// locked file could not be moved with its token.
			*n = ""
		}
	}
	// The tokens a list names may lock any path the request changes,
	// or the resource a tag names; a COPY's source too, whose
	// Request-URI an untagged list is (RFC 4918 10.4.1).
	locks := []string{name0, name1}
	if name0 == "" && r.q != nil {
		locks[0] = r.q.path
	}
	// The paths it changes must have the tokens of the locks on them
	// submitted, in whatever list of the header (10.4.1); the tagged
	// resource is only named.
	changes := []string{name0, name1}
	if tagged != "" {
		changes[0] = ""
	}
	if err := r.userLocks.confirm(now, conditions, r.tokens, locks, changes); err != nil {
		return nil, err
	}
	return func() {}, nil
}

// listHolds reports whether the Not and entity-tag conditions of an If
// list hold for the resource p: a Not <token> where that token's lock
// does not cover p, an entity tag equal to p's ETag (weakly compared;
// none where p names nothing or a collection), and its Not where it
// differs. A list's tokens are confirm's.
func (r *requestLocks) listHolds(now time.Time, p string, conditions []dav.Condition) bool {
	etag, looked := "", false
	for _, c := range conditions {
		switch {
		case c.ETag != "":
			if !looked && r.etag != nil {
				etag, looked = r.etag(p), true
			}
			same := etag != "" && strings.TrimPrefix(c.ETag, "W/") == strings.TrimPrefix(etag, "W/")
			if same == c.Not {
				return false
			}
		case c.Not:
			r.userLocks.mu.Lock()
			l, ok := r.userLocks.held[c.Token]
			r.userLocks.mu.Unlock()
			if ok && l.covers(now, p) {
				return false
			}
		}
	}
	return true
}

// confirm is memLS's Confirm without its hold, for one If list
// (conditions): each token it names (but a Not one) must be a live lock
// that covers one of the paths locks names (its root, or below an
// infinite one), and each of the paths changes names that is locked
// must have that lock's token among tokens, the ones the whole If header
// submits (RFC 4918 10.4.1; a list's Not and entity-tag conditions are
// listHolds'). "" names no path. memLS held the lock for the request's
// duration, and meanwhile a refresh of it answered 500 (x/net/webdav's
// answer to memLS's ErrLocked), an UNLOCK 423, and a second request with
// its token 412 (memLS looks past a held lock): a client uploading with
// its lock could neither refresh it nor upload two files at once into a
// collection it locked. A lock database knows no holder on Apache
// either: a request that confirmed a lock goes on if the lock ends
// meanwhile.
func (u *userLocks) confirm(now time.Time, conditions []dav.Condition, tokens, locks, changes []string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	clean := func(names []string) []string {
		var out []string
		for _, n := range names {
			if n != "" {
				out = append(out, cleanPath(n))
			}
		}
		return out
	}
	lockable, changed := clean(locks), clean(changes)
	for _, c := range conditions {
		if c.Token == "" || c.Not {
			continue
		}
		l, ok := u.held[c.Token]
		if !ok || !slices.ContainsFunc(lockable, func(p string) bool { return l.covers(now, p) }) {
			return dav.ErrConfirmationFailed // a token that locks none of them
		}
	}
	for _, p := range changed {
		for tok, l := range u.held {
			if l.covers(now, p) && !slices.Contains(tokens, tok) {
				return dav.ErrConfirmationFailed
			}
		}
	}
	return nil
}

// Unlock implements dav.LockSystem. An UNLOCK's Request-URI must lie in
// the lock's scope (RFC 4918 9.11.1: 409, lock-token-matches-request-uri);
// x/net/webdav unlocks by the token alone, so an UNLOCK of one path
// released another's lock.
func (r *requestLocks) Unlock(now time.Time, token string) error {
	if r.q != nil && r.q.method == "UNLOCK" {
		r.userLocks.mu.Lock()
		l, ok := r.userLocks.held[token]
		r.userLocks.mu.Unlock()
		switch {
		case !ok || l.root == r.q.path:
		case !l.covers(now, r.q.path):
			r.q.lockErr = fmt.Errorf("%w: the token locks %s, not %s", dav.ErrNoSuchLock, l.root, r.q.path)
			return dav.ErrNoSuchLock
		case r.exists != nil && !r.exists(r.q.path):
			// In the lock's scope, but no resource (as Apache, which
			// keeps the lock).
			r.q.lockErr = fmt.Errorf("%w: %s, in the scope of the lock on %s, does not exist", dav.ErrNoSuchLock, r.q.path, l.root)
			return dav.ErrNoSuchLock
		}
	}
	return r.userLocks.Unlock(now, token)
}

// roles are what the request does to p: removes or replaces it with all
// it holds (tree), removes it from its collection (removes), or adds it
// there if it is new (adds).
func (r *requestLocks) roles(p string) (tree, removes, adds bool) {
	q := r.q
	switch {
	case q == nil:
	case q.method == "DELETE":
		return true, true, false
	case q.method == "MOVE" && p == q.path:
		return true, true, false
	case (q.method == "MOVE" || q.method == "COPY") && p == q.dst:
		// Onto an existing member too: the destination is deleted
		// first (RFC 4918 9.8.4, 9.9.3), and a member made again.
		return true, true, true
	case q.method == "MKCOL", q.method == "PUT", q.method == "LOCK":
		return false, false, true
	}
	return false, false, false
}

// check refuses a change of p that a lock the request brings no token of
// protects (see the type's doc).
func (r *requestLocks) check(now time.Time, p string) error {
	tree, removes, adds := r.roles(p)
	if !tree && !removes && !adds {
		return nil
	}
	var collectionLocked bool
	r.userLocks.mu.Lock()
	for tok, l := range r.userLocks.held {
		if !now.Before(l.end) || slices.Contains(r.tokens, tok) {
			continue
		}
		if tree && inside(l.root, p) {
			r.userLocks.mu.Unlock()
			return r.locked(fmt.Errorf("%w: %s holds %s, locked by another token", dav.ErrLocked, p, l.root))
		}
		if l.zeroDepth && p != "/" && l.root == path.Dir(p) {
			collectionLocked = true
		}
	}
	r.userLocks.mu.Unlock()
	if collectionLocked && (removes || r.q.method == "MKCOL" || r.exists == nil || !r.exists(p)) {
		return r.locked(fmt.Errorf("%w: %s is locked (depth 0): a member comes or goes only with its token", dav.ErrLocked, path.Dir(p)))
	}
	return nil
}

// locked keeps why as the request's reason and returns dav.ErrLocked
// itself, which x/net/webdav compares errors with (423; any other error
// is 500).
func (r *requestLocks) locked(why error) error {
	if r.q != nil {
		r.q.lockErr = why
	}
	return dav.ErrLocked
}

// byParentLock reports whether p is let through by the token of a
// depth-0 lock on its collection alone (conditions name it, and no lock
// covering p itself): the request adds or removes p there.
func (r *requestLocks) byParentLock(now time.Time, p string, conditions []dav.Condition) bool {
	_, removes, adds := r.roles(p)
	if (!removes && !adds) || p == "/" {
		return false
	}
	parent := path.Dir(p)
	r.userLocks.mu.Lock()
	defer r.userLocks.mu.Unlock()
	found := false
	for tok, l := range r.userLocks.held {
		if l.covers(now, p) {
			return false // p is locked itself: memLS judges its token
		}
		if now.Before(l.end) && l.root == parent && l.zeroDepth && slices.ContainsFunc(conditions, func(c dav.Condition) bool { return !c.Not && c.Token == tok }) {
			found = true
		}
	}
	return found
}

// covered reports whether a lock, whoever holds it, covers p: one on p,
// or an infinite one above it.
func (r *requestLocks) covered(now time.Time, p string) bool {
	r.userLocks.mu.Lock()
	defer r.userLocks.mu.Unlock()
	for _, l := range r.userLocks.held {
		if l.covers(now, p) {
			return true
		}
	}
	return false
}

// dropBelow ends the locks rooted at p or below it: what they locked is
// gone. With keep (nil: none), those whose root it keeps stay: what a
// DELETE that failed part way left. keep runs without the mutex held
// (it may ask the agent).
func (u *userLocks) dropBelow(now time.Time, p string, keep func(root string) bool) {
	kept := map[string]bool{}
	if keep != nil {
		u.mu.Lock()
		var below []string
		for _, l := range u.held {
			if l.root == p || inside(l.root, p) {
				below = append(below, l.root)
			}
		}
		u.mu.Unlock()
		for _, root := range below {
			kept[root] = keep(root)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for tok, l := range u.held {
		if l.root != p && !inside(l.root, p) || kept[l.root] {
			continue
		}
		// (Nothing holds a client's lock in memLS: confirm.)
		if err := u.LockSystem.Unlock(now, tok); err == nil || errors.Is(err, dav.ErrNoSuchLock) {
			delete(u.held, tok)
		}
	}
}

// lockedByOther reports whether a lock on p or an infinite one above it
// is held under a token the request does not bring.
func (r *requestLocks) lockedByOther(now time.Time, p string) bool {
	r.userLocks.mu.Lock()
	defer r.userLocks.mu.Unlock()
	for tok, l := range r.userLocks.held {
		if l.covers(now, p) && !slices.Contains(r.tokens, tok) {
			if r.q != nil {
				r.q.lockErr = fmt.Errorf("%w: %s is locked (%s), and the If header names another resource", dav.ErrLocked, p, l.root)
			}
			return true
		}
	}
	return false
}
