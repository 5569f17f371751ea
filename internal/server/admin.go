package server

import (
	"fmt"
	"slices"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/internal/admin"
	"github.com/simpled/simpled/internal/config"

	"go.uber.org/zap"
)

// adminOptions wires the admin API to the stages, the store and the admin.* settings; the
// HTTP listener is bound (s.httpAddr is the address Host headers must name).
func (s *Server) adminOptions() admin.Options {
	o := admin.Options{
		Gatherer:      s.registry,
		Ready:         s.Ready,
		Registrations: s.registrar,
		Messages:      s.offline,
		Presence:      s.presence,
		Users:         s.store,
		Cluster:       s.cluster,
		Routes:        s.routes,
		Domains:       s.opts.Domains,
		Log:           s.log.Named("admin"),
		Audit:         s.log.Named("audit"),
		Registerer:    s.registry,
		Token:         s.adminToken,
		Addr:          s.httpAddr,
		Hosts:         s.opts.Admin.Hosts,
		SendAsUsers:   s.opts.Admin.SendAsUsers,
		AuthOff:       s.opts.AuthMode() == config.AuthOff,
		Pprof:         s.opts.Pprof,
	}
	if f := s.users.File(); f != nil {
		o.UsersFile = f
	}
	if s.mwi != nil {
		o.MWI = s.mwi
	}
	return o
}

// ReloadUsers reads the users file (-users) again, as on SIGHUP: users added to it can
// authenticate and users removed from it no longer can, without a restart. A file that does
// not parse changes nothing; the error (every bad line) is logged and returned. Without
// -users there is nothing to reload.
func (s *Server) ReloadUsers() error {
	log := s.log.Named("auth")
	d, ok, err := s.users.Reload()
	if !ok {
		log.Info("reload: no users file (-users) to read")
		return nil
	}
	if err != nil {
		log.Error("reload: users file not loaded, the previous users stay in force",
			zap.String("file", s.opts.UsersFile), zap.Error(err))
		return fmt.Errorf("server: reload users: %w", err)
	}
	log.Info("reload: users file loaded", zap.String("file", s.opts.UsersFile), zap.Int("users", s.users.File().Len()),
		zap.Strings("added", d.Added), zap.Strings("removed", d.Removed), zap.Strings("changed", d.Changed))
	for _, dom := range s.users.File().Domains() {
		if !slices.Contains(s.opts.Domains, dom) {
			log.Warn("users file has entries for a domain that is not served; they are never used",
				zap.String(logging.KeyAOR, "*@"+dom))
		}
	}
	return nil
}
