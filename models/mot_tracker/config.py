# SPDX-License-Identifier: Apache-2.0
"""Settings of the whole-sequence tracker."""

from dataclasses import dataclass

from pyro_dvae import checks

from ..tracking.config import LATENTS

#: the DVAE refinement's E-S steps (:class:`TrackerConfig` ``smoother``)
SMOOTHERS = ("velocity", "parallel")

#: the shipped trajectory prior of the refinement, re-linking and lost tracks' forecasts when none is given: the
#: velocity-input SRNN trained on real pedestrian tracks (``pyro_dvae/pretrained/TRAINING.md``)
DEFAULT_PRIOR = "srnn_mot_real"


@dataclass
class TrackerConfig:
    """Settings of the whole-sequence tracker (defaults: ByteTrack's MOT17 evaluation settings for stage 1).

    :ivar high_score: detections at or above this score are matched first and may start tracks.
    :ivar low_score: detections in ``[low_score, high_score)`` are matched second, to unmatched tracks only.
    :ivar birth_score: a new track needs a detection at or above this score.
    :ivar match_iou: first tier: a pair needs ``IoU * score >= match_iou``.
    :ivar low_match_iou: second tier: a pair needs ``IoU >= low_match_iou``.
    :ivar confirm_iou: a tentative track is confirmed by a detection with ``IoU * score >= confirm_iou``.
    :ivar max_age: frames a track survives without a detection (at 30 fps; scaled by the frame rate).
    :ivar predict: the box a *lost* track (undetected for more than ``predict_after`` frames at 30 fps) is matched
        with: ``"cv"`` (its constant-velocity Kalman prediction) or ``"dvae"`` (a forecast of the trajectory prior
        at about 7.5 fps, :mod:`.motion`, from its last ``relink_context`` subsampled boxes).
    :ivar refine: run the MixDVAE refinement (stage 2).
    :ivar dynamics: the refinement's dynamics: ``"dvae"`` (the DVAE prior, MixDVAE) or ``"cv"`` (constant
        velocity, the VKF baseline of the same model).
    :ivar latents: where the refinement's E-Z step takes the DVAE's ``z`` from: ``"prior"`` (the prior's
        conditionals along the current track, at their means: the dynamics read only the past, a learned
        one-step forecast) or ``"posterior"`` (MixDVAE's encoder draw, which reads every step of the track)
        (:class:`~pyro_dvae.models.tracking.TrackingConfig`). The default was chosen on the MOT17-02/04/09 val-half
        frames (BENCHMARKS.md).
    :ivar smoother: the DVAE refinement's E-S step (:class:`~pyro_dvae.models.tracking.TrackingConfig` ``mode``):
        ``"velocity"`` (a constant-velocity smoother steered by the prior's one-step displacement, taken as an
        observation of the velocity with ``velocity_scale`` times the prior's variance; its acceleration noise
        fitted by EM) or ``"parallel"`` (MixDVAE's chain: the positions follow the prior's drift). Chosen on the
        MOT17-02/04/09 val-half frames and MOT15 with leave-one-sequence-out priors (BENCHMARKS.md).
    :ivar velocity_scale: see ``smoother``.
    :ivar camera: ``"scene"``: the velocity smoother's prior reads each track relative to the image motion common to
        the tracks of each frame (:func:`~pyro_dvae.models.mot_tracker.motion.scene_motion`: a moving camera's), so
        that a prior learnt on walkers sees walkers (for moving cameras; walkers going one way together are taken
        for the camera); ``"off"`` (default): the tracks as they are.
    :ivar relink: join a track that ended to one born later (:mod:`.relink`), forecasting with ``"dvae"`` (the
        refinement's trajectory prior) or ``"cv"`` (constant velocity); ``"off"``: no re-linking.
    :ivar relink_gap: the longest gap (seconds) a re-link bridges; ``relink_cost``: the largest cost of a joined
        pair (forecast centre error in heights + absolute log height ratio); ``relink_context``: subsampled
        boxes a forecast (re-linking, ``predict``) starts from.
    :ivar window: frames per refinement window; ``iters``: VEM iterations; ``clutter_prob``: prior weight of
        the clutter class in E-W.
    """

    high_score: float = 0.6
    low_score: float = 0.1
    birth_score: float = 0.7
    match_iou: float = 0.1
    low_match_iou: float = 0.5
    confirm_iou: float = 0.3
    max_age: int = 30
    predict: str = "cv"
    predict_after: int = 1
    refine: bool = True
    dynamics: str = "dvae"
    latents: str = "prior"
    smoother: str = "velocity"
    velocity_scale: float = 5.0
    camera: str = "off"
    window: int = 60
    iters: int = 10
    clutter_prob: float = 0.0
    relink: str = "off"
    relink_gap: float = 1.0
    relink_cost: float = 0.5
    relink_context: int = 8

    def __post_init__(self):
        for name in ("high_score", "low_score", "birth_score", "match_iou", "low_match_iou", "confirm_iou",
                     "clutter_prob"):
            checks.unit(name, getattr(self, name))
        if self.low_score > self.high_score:
            raise ValueError(f"low_score ({self.low_score}) must not exceed high_score ({self.high_score})")
        self.max_age = checks.integer("max_age", self.max_age, 1)
        checks.choice("dynamics", self.dynamics, ("dvae", "cv"))
        checks.choice("predict", self.predict, ("dvae", "cv"))
        checks.choice("latents", self.latents, LATENTS)
        checks.choice("smoother", self.smoother, SMOOTHERS)
        self.velocity_scale = checks.positive("velocity_scale", self.velocity_scale)
        checks.choice("camera", self.camera, ("scene", "off"))
        self.predict_after = checks.integer("predict_after", self.predict_after, 0)
        checks.choice("relink", self.relink, ("dvae", "cv", "off"))
        checks.positive("relink_gap", self.relink_gap)
        checks.positive("relink_cost", self.relink_cost)
        self.relink_context = checks.integer("relink_context", self.relink_context, 2)
        self.window = checks.integer("window", self.window, 2)
        self.iters = checks.integer("iters", self.iters, 1)
