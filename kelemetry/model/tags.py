"""Reserved span tag keys: the contract between the collector and the query side."""

CLUSTER = "cluster"
GROUP = "group"
VERSION = "version"
RESOURCE = "resource"
NAMESPACE = "namespace"
NAME = "name"
UID = "uid"
KIND = "kind"

TRACE_SOURCE = "kelemetry.trace_source"
PSEUDO = "kelemetry.pseudo"
WINDOW_START = "kelemetry.window_start"

AUDIT_ID = "audit.id"
AUDIT_VERB = "audit.verb"
AUDIT_USER = "audit.user"
AUDIT_IMPERSONATOR = "audit.impersonator"
AUDIT_USER_AGENT = "audit.user_agent"
AUDIT_CODE = "audit.code"
AUDIT_SUBRESOURCE = "audit.subresource"
AUDIT_SOURCE_IP = "audit.source_ip"
RESOURCE_VERSION = "resource_version"
ERROR = "error"

# Anything starting with this prefix is bookkeeping the UI should not show (as in Go Kelemetry).
HIDDEN_PREFIX = "zzz-"

OBJECT_KEY_TAGS = (CLUSTER, GROUP, VERSION, RESOURCE, NAMESPACE, NAME, UID, KIND)

CHANGE_VERB = "change.verb"

EVENT_REASON = "event.reason"
EVENT_TYPE = "event.type"
EVENT_COUNT = "event.count"
EVENT_SOURCE = "event.source"

GAP_REASON = "gap.reason"
GAP_START = "gap.start"
GAP_END = "gap.end"
GAP_DETAIL = "gap.detail"
