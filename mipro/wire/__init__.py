"""Mobile IPv4 wire codec: pure functions over bytes, no I/O."""

from .advertisement import (
    AgentAdvertisement,
    AgentFlags,
    AgentSolicitation,
    ChallengeExtension,
    MobilityAgentExtension,
    PaddingExtension,
    PrefixLengthsExtension,
    decode_icmp,
)
from .binding import (
    EXPERIMENTAL_MESSAGE,
    BindingAck,
    BindingFlags,
    BindingStatus,
    BindingUpdate,
    ExperimentalSubType,
)
from .codes import Code, code_name
from .errors import DecodeError
from .extensions import (
    DEFAULT_VENDOR_ID,
    Cvse,
    DecodeContext,
    Encapsulation,
    Extension,
    ExtType,
    FaHaAuth,
    GeneralizedAuth,
    MnFaAuth,
    MnFaChallenge,
    MnHaAuth,
    Nai,
    Nvse,
    RawExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
)
from .messages import (
    Region,
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    TunnelData,
    decode_udp434,
)
from .vendor import (
    CertificateExtension,
    FilterRule,
    FilterRulesExtension,
    HomeAddressInUse,
    PreviousFaNotification,
    StaticRoute,
    StaticRoutesExtension,
    Verdict,
)

__all__ = [
    "AgentAdvertisement", "AgentFlags", "AgentSolicitation", "BindingAck", "BindingFlags",
    "BindingStatus", "BindingUpdate", "CertificateExtension",
    "ChallengeExtension", "Code", "Cvse", "DEFAULT_VENDOR_ID", "DecodeContext", "DecodeError",
    "EXPERIMENTAL_MESSAGE", "Encapsulation", "ExperimentalSubType", "ExtType", "Extension",
    "FaHaAuth", "FilterRule", "FilterRulesExtension",
    "GeneralizedAuth", "HomeAddressInUse", "MnFaAuth", "MnFaChallenge", "MnHaAuth", "MobilityAgentExtension", "Nai",
    "Nvse", "PaddingExtension", "Region", "PrefixLengthsExtension", "PreviousFaNotification", "RawExtension", "RegistrationReply",
    "RegistrationRequest", "RequestFlags", "StaticRoute", "StaticRoutesExtension", "TunnelData",
    "UdpTunnelReply", "UdpTunnelRequest", "Verdict", "code_name", "decode_icmp", "decode_udp434",
]
