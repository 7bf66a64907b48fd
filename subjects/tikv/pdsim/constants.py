"""Protobuf enum values PD renders as integers (metapb.StoreState, NodeState, PeerRole)."""

from __future__ import annotations

STATE_UP, STATE_OFFLINE, STATE_TOMBSTONE = 0, 1, 2
STATE_NAMES = {STATE_UP: "Up", STATE_OFFLINE: "Offline", STATE_TOMBSTONE: "Tombstone"}
NODE_PREPARING, NODE_SERVING, NODE_REMOVING, NODE_REMOVED = 0, 1, 2, 3
ROLE_VOTER, ROLE_LEARNER = 0, 1
ROLE_NAMES = {0: "Voter", 1: "Learner", 2: "IncomingVoter", 3: "DemotingVoter"}
