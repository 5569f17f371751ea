package server

import (
	"context"
	"time"

	"github.com/simpled/simpled/base/sipgox"
	"github.com/simpled/simpled/delivery"
	"github.com/simpled/simpled/dns"
	"github.com/simpled/simpled/msgcheck"
	"github.com/simpled/simpled/offline"
	"github.com/simpled/simpled/presence"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

// dnsTimeout bounds one DNS query of the resolver that locates other domains.
const dnsTimeout = 2 * time.Second

// buildSenders builds the services that send what simpled originates, in dependency order:
// the RFC 3263 resolver, delivery (requests simpled originates, and how every contact is
// reached), the MESSAGE content rules and offline store-and-forward. They come after the
// sipgo client and before the stages: presence sends its NOTIFYs through delivery, the proxy
// stores through offline, the admin API sends through offline. The non-INVITE client
// transactions join s.strays, which the user agent was built with.
func (s *Server) buildSenders() error {
	opts, log := s.opts, s.log
	txs := sipgox.NewClientTxs(s.client)
	s.strays.Handle(txs.Deliver)
	var err error
	s.delivery, err = delivery.New(delivery.Options{
		Domains:    opts.Domains,
		Flows:      s.flows,
		Locator:    s.location,
		Client:     s.client,
		ClientTxs:  txs,
		Resolver:   dns.NewResolver(opts.Proxy.DNS, dnsTimeout),
		Seals:      s.seals,
		GRUUs:      s.gruus,
		LastSeen:   s.live.Seen,
		UDPMTU:     opts.Proxy.UDPMTU,
		Log:        log.Named("delivery"),
		Registerer: s.registry,
	})
	if err != nil {
		return err
	}
	s.rules = msgcheck.New(msgcheck.Options{Domains: opts.Domains, IsOurs: s.isOurs,
		Types: opts.Messages.ContentTypes, MaxBodySize: opts.Limits.MaxBodySize})
	s.offline, err = offline.New(offline.Options{
		Store:          s.store,
		Sender:         s.delivery,
		Domains:        opts.Domains,
		Rules:          s.rules,
		HasCredentials: s.users.Known,
		Bus:            s.cluster,
		Limited:        s.limited,
		Count:          s.delivery.CountMessage,
		MaxBodySize:    opts.Limits.MaxBodySize,
		MaxCount:       opts.Messages.OfflineMaxCount,
		MaxBytes:       opts.Messages.OfflineMaxBytes,
		MaxAge:         opts.Messages.OfflineMaxAge,
		// Per sender and for foreign senders together: spam cannot lock a mailbox.
		MaxPerSender: opts.Messages.OfflineMaxPerSender,
		ForeignShare: opts.Messages.OfflineForeignShare,
		Log:          log.Named("offline"),
	})
	if err != nil {
		return err
	}
	s.closers = append(s.closers, s.offline.Close)
	return nil
}

// notifySender sends the presence agent's NOTIFYs through delivery, which knows the
// listeners, the location service and the flows.
type notifySender struct{ d *delivery.Delivery }

func (n notifySender) SendInDialog(ctx context.Context, req *sip.Request, sub *storage.Subscription) (int, error) {
	return n.d.SendInDialog(ctx, req, delivery.Dialog{RemoteTarget: sub.RemoteTarget, RouteSet: sub.RouteSet,
		Transport: sub.Transport, Source: sub.Source, Retransmits: presence.Retransmits(ctx)})
}
