"""Incidents: tickets that share a cause are grouped (engine.incidents.grouping), muted tickets
are recorded only (engine.incidents.muting), and the incident, not each ticket, is diagnosed
(engine.incidents.stage: which ticket of an incident the acting stage may attempt)."""

from engine.incidents.grouping import group_key
from engine.incidents.muting import Inhibition, MuteContext, Muter, muted_by, muters_of
from engine.incidents.stage import IncidentStage

__all__ = ["IncidentStage", "Inhibition", "MuteContext", "Muter", "group_key", "muted_by", "muters_of"]
