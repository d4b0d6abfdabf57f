"""The simulator as one spec: ``simulator:BTC`` / ``simulator:ETH`` sources (a seeded
Deribit session, no network), the ``[simulator]`` table."""

from __future__ import annotations

from connectors.common.ingest import IngestStage
from connectors.common.venue import VenueSpec, choice_target
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_config import CURRENCIES
from connectors.simulator.source import SimulatedSource, SimulatorConfig

CURRENCY = choice_target("simulated currency", tuple(CURRENCIES))


def normaliser(config: SimulatorConfig | None) -> DeribitNormaliser:
    return DeribitNormaliser()  # the sessions are Deribit's wire format


def client(
    config: SimulatorConfig | None, currencies: tuple[str, ...], stage: IngestStage
) -> SimulatedSource:
    return SimulatedSource(config or SimulatorConfig(), currencies, stage)


SPEC = VenueSpec("simulator", SimulatorConfig, normaliser, client, CURRENCY, "simulator:BTC")
