package sipgox

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// simpled runs its non-INVITE client transactions (RFC 3261 §17.1.2) itself rather than
// through sipgo's transaction layer: those of the requests the proxy relays and of the
// requests simpled originates (package delivery). sipgo keeps all client transactions in one map behind one
// RWMutex, written twice per transaction (add, delete): under a few thousand relayed MESSAGEs a
// second the wake-ups of that lock, not CPU, bounded throughput (a lock convoy in the execution
// trace). Here the table is sharded, a transaction costs no goroutine, and its responses come
// from sipgo's hook for responses that matched none of its own transactions. INVITE (ACK
// generation, 2xx handling) and CANCEL stay with sipgo.

// clientTxShards spreads the table's locks; a power of two.
const clientTxShards = 64

// clientConnectTimeout bounds opening a connection to send a request over a stream transport.
const clientConnectTimeout = 5 * time.Second

// ClientTxs is the table of simpled's own non-INVITE client transactions, keyed by branch and
// method. Its Deliver must see the responses sipgo matched to none of its transactions:
// register it with the StrayRouter the user agent was built with. Create it with
// NewClientTxs; it is safe for concurrent use.
type ClientTxs struct {
	client *sipgo.Client
	seed   maphash.Seed
	shards [clientTxShards]clientTxShard
}

type clientTxShard struct {
	mu sync.Mutex
	m  map[string]*nonInviteTx
}

// NewClientTxs returns an empty table whose transactions write through client's transport
// layer.
func NewClientTxs(client *sipgo.Client) *ClientTxs {
	t := &ClientTxs{client: client, seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = map[string]*nonInviteTx{}
	}
	return t
}

func (t *ClientTxs) shard(key string) *clientTxShard {
	return &t.shards[maphash.String(t.seed, key)&(clientTxShards-1)]
}

func (t *ClientTxs) add(tx *nonInviteTx) bool {
	s := t.shard(tx.key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.m[tx.key]; dup {
		return false
	}
	s.m[tx.key] = tx
	return true
}

func (t *ClientTxs) remove(tx *nonInviteTx) {
	s := t.shard(tx.key)
	s.mu.Lock()
	if s.m[tx.key] == tx {
		delete(s.m, tx.key)
	}
	s.mu.Unlock()
}

// Deliver hands res to the transaction it answers and reports whether there was one.
func (t *ClientTxs) Deliver(res *sip.Response) bool {
	key, ok := responseKey(res)
	if !ok {
		return false
	}
	s := t.shard(key)
	s.mu.Lock()
	tx := s.m[key]
	s.mu.Unlock()
	if tx == nil {
		return false
	}
	tx.receive(res)
	return true
}

// txKey identifies a client transaction: the branch of our Via and the method (RFC 3261
// §17.1.3).
func txKey(branch string, method sip.RequestMethod) string { return branch + " " + string(method) }

func responseKey(res *sip.Response) (string, bool) {
	via, cs := res.Via(), res.CSeq()
	if via == nil || cs == nil {
		return "", false
	}
	branch, ok := via.Params.Get("branch")
	if !ok || branch == "" {
		return "", false
	}
	return txKey(branch, cs.MethodName), true
}

// nonInviteTx is one non-INVITE client transaction: Trying/Proceeding with Timer E
// retransmissions over UDP, Timer F timeout, Completed on a final response. It satisfies
// sip.ClientTransaction, so a fork treats it like sipgo's.
type nonInviteTx struct {
	key       string
	txs       *ClientTxs
	req       *sip.Request
	reliable  bool
	responses chan *sip.Response
	done      chan struct{}

	mu       sync.Mutex
	interval time.Duration
	left     int  // retransmissions still allowed, when capped
	capped   bool // a cap on retransmissions was asked for (delivery's Dialog.Retransmits)
	timerE   *time.Timer
	timerF   *time.Timer
	final    bool
	closed   bool
	err      error
	onTerm   []sip.FnTxTerminate
}

var _ sip.ClientTransaction = (*nonInviteTx)(nil)

// Start starts a client transaction for r (its top Via is ours, r is addressed: transport,
// destination and, for UDP, the local socket) and sends r. Over UDP,
// retransmits > 0 caps Timer E's retransmissions (the presence agent's first NOTIFY to a
// watcher that never answered one: an unanswered SUBSCRIBE from a forged source must not make
// simpled send a dozen datagrams there); Timer F still ends the transaction.
func (t *ClientTxs) Start(r *sip.Request, retransmits int) (sip.ClientTransaction, error) {
	branch, _ := r.Via().Params.Get("branch")
	tx := &nonInviteTx{
		key:       txKey(branch, r.Method),
		txs:       t,
		req:       r,
		reliable:  r.Transport() != "UDP",
		responses: make(chan *sip.Response, 4),
		done:      make(chan struct{}),
		interval:  sip.T1,
		left:      retransmits,
		capped:    retransmits > 0,
	}
	if !t.add(tx) {
		return nil, fmt.Errorf("sipgox: client transaction %s exists", tx.key)
	}
	if err := t.write(r); err != nil {
		t.remove(tx)
		return nil, fmt.Errorf("sipgox: send %s: %w", r.Method, errors.Join(err, sip.ErrTransactionTransport))
	}
	tx.mu.Lock()
	if !tx.reliable && !tx.final {
		tx.timerE = time.AfterFunc(tx.interval, tx.retransmit)
	}
	if !tx.final {
		tx.timerF = time.AfterFunc(64*sip.T1, func() {
			tx.terminate(fmt.Errorf("sipgox: no final response to %s within Timer F: %w", r.Method, sip.ErrTransactionTimeout))
		})
	}
	tx.mu.Unlock()
	return tx, nil
}

// write sends a request over the transport it is addressed for.
func (t *ClientTxs) write(r *sip.Request) error {
	ctx := context.Background()
	if r.Transport() != "UDP" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, clientConnectTimeout)
		defer cancel()
	}
	conn, err := t.client.TransportLayer().ClientRequestConnection(ctx, r)
	if err != nil {
		return err
	}
	defer conn.TryClose()
	return conn.WriteMsg(r)
}

// retransmit is Timer E: resend, doubling the interval up to T2 (T2 at once after a
// provisional response).
func (tx *nonInviteTx) retransmit() {
	tx.mu.Lock()
	stop := tx.final || tx.closed
	tx.mu.Unlock()
	if stop {
		return
	}
	// Written before the next timer is set: one write of the request at a time.
	_ = tx.txs.write(tx.req) // a lost retransmission is what retransmissions are for
	tx.mu.Lock()
	if tx.capped {
		if tx.left--; tx.left <= 0 {
			tx.mu.Unlock()
			return // Timer F ends the transaction
		}
	}
	if !tx.final && !tx.closed {
		tx.interval = min(2*tx.interval, sip.T2)
		tx.timerE = time.AfterFunc(tx.interval, tx.retransmit)
	}
	tx.mu.Unlock()
}

func (tx *nonInviteTx) receive(res *sip.Response) {
	tx.mu.Lock()
	if tx.final || tx.closed {
		tx.mu.Unlock()
		return // a retransmitted final answer: absorbed
	}
	if res.IsProvisional() {
		tx.interval = sip.T2
		tx.mu.Unlock()
		select {
		case tx.responses <- res:
		default: // nobody needs every provisional answer of a non-INVITE
		}
		return
	}
	tx.final = true
	if tx.timerE != nil {
		tx.timerE.Stop()
	}
	if tx.timerF != nil {
		tx.timerF.Stop()
	}
	tx.mu.Unlock()
	tx.txs.remove(tx)
	select {
	case tx.responses <- res:
	default:
		go func() { tx.responses <- res }() // the buffer held provisionals: never lose a final
	}
	// Done follows once the final answer has surely been read (Timer K's role).
	time.AfterFunc(sip.T4, func() { tx.terminate(nil) })
}

func (tx *nonInviteTx) terminate(err error) {
	tx.mu.Lock()
	if tx.closed {
		tx.mu.Unlock()
		return
	}
	tx.closed = true
	tx.err = err
	if tx.timerE != nil {
		tx.timerE.Stop()
	}
	if tx.timerF != nil {
		tx.timerF.Stop()
	}
	callbacks := tx.onTerm
	tx.mu.Unlock()
	tx.txs.remove(tx)
	close(tx.done)
	for _, f := range callbacks {
		f(tx.key, err)
	}
}

// Terminate implements sip.Transaction.
func (tx *nonInviteTx) Terminate() { tx.terminate(sip.ErrTransactionTerminated) }

// OnTerminate implements sip.Transaction.
func (tx *nonInviteTx) OnTerminate(f sip.FnTxTerminate) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.closed {
		return false
	}
	tx.onTerm = append(tx.onTerm, f)
	return true
}

// Done implements sip.Transaction.
func (tx *nonInviteTx) Done() <-chan struct{} { return tx.done }

// Err implements sip.Transaction.
func (tx *nonInviteTx) Err() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.err
}

// Responses implements sip.ClientTransaction.
func (tx *nonInviteTx) Responses() <-chan *sip.Response { return tx.responses }

// OnRetransmission implements sip.ClientTransaction: a non-INVITE has no 2xx retransmissions
// to pass on.
func (tx *nonInviteTx) OnRetransmission(sip.FnTxResponse) bool { return false }
