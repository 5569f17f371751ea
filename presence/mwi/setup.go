package mwi

// Config is the mwi: section of the configuration file (internal/config embeds it as is).
type Config struct {
	// Unsolicited sends, on every change of a user's message summary, an out-of-dialog
	// NOTIFY (Event: message-summary, Subscription-State: active, as Asterisk sends it) to
	// every registered device of the user, for phones that never subscribe. Default false.
	Unsolicited bool `yaml:"unsolicited"`
	// Server is the SIP URI of a voicemail server that answers message-summary SUBSCRIBEs
	// itself: simpled then does not serve the package and forwards those SUBSCRIBEs there.
	// Default "" (simpled serves it).
	Server string `yaml:"server"`
}

// DefaultConfig is the mwi: section of config.Default.
func DefaultConfig() Config {
	return Config{
		// Phones that want the lamp subscribe (RFC 3842); unsolicited NOTIFYs surprise
		// devices that did not ask for them.
		Unsolicited: false,
		// simpled serves message-summary itself.
		Server: "",
	}
}
