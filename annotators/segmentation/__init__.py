"""Event-preserving segmentation: frame evidence -> candidate cuts -> cuts under length limits. No Ray."""

from annotators.segmentation.cuts import Segment, choose_segments
from annotators.segmentation.evidence import EvidenceModels, FrameEvidence, compute_evidence
from annotators.segmentation.segmenter import EventSegmenterCore, SourceSegment

__all__ = [
    "EventSegmenterCore", "EvidenceModels", "FrameEvidence", "Segment", "SourceSegment", "choose_segments",
    "compute_evidence",
]
