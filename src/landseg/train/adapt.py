"""Learning from unlabelled images of the place to be mapped: a mean teacher's pseudo-labels.

Every training step also takes a batch of unlabelled crops (``data.unlabeled``, in two views of one
geometry: ``landseg.data.unlabeled``). The teacher, an exponential moving average of the network
(Tarvainen and Valpola 2017), labels the weak views; the network learns those labels on the strong views
(colour jitter, and with probability ``cutmix`` a box of another crop pasted in with its labels, as in
FixMatch, UniMatch and DACS). A pixel's label is learnt where the teacher's probability (sharpened by
``teacher_temperature``) reaches ``threshold``, or where it is among the ``class_share`` most confident
pixels of the class the teacher predicts there (class-balanced self-training, Zou et al. 2018), so that
classes which look different in the new place still get labels. The unlabelled loss is the cross-entropy over the learnt pixels divided
by all valid pixels, weighted by ``weight`` and ramped in over ``ramp_steps``.

Nothing here reads a label of the unlabelled images: checkpoints are chosen, as ever, on the validation
split alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from landseg.classes import IGNORE_INDEX
from landseg.config import AdaptConfig


@dataclass
class UnlabelledStep:
    loss: torch.Tensor
    learnt_share: float
    """Share of the valid unlabelled pixels whose pseudo-label was learnt."""


class MeanTeacher:
    """The teacher network (an EMA of the student) and the unlabelled loss it teaches."""

    def __init__(self, student: torch.nn.Module, config: AdaptConfig):
        self.config = config
        self.teacher = copy.deepcopy(student).eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: torch.nn.Module) -> None:
        """Teacher weights move towards the student's; batch-norm statistics are copied."""
        decay = self.config.ema
        for mine, theirs in zip(self.teacher.parameters(), student.parameters(), strict=True):
            mine.mul_(decay).add_(theirs.detach(), alpha=1 - decay)
        for own_buffer, student_buffer in zip(self.teacher.buffers(), student.buffers(), strict=True):
            own_buffer.copy_(student_buffer)

    def step(
        self,
        student: torch.nn.Module,
        weak: torch.Tensor,
        strong: torch.Tensor,
        valid: torch.Tensor,
        global_step: int,
        generator: torch.Generator | None = None,
    ) -> UnlabelledStep:
        """The weighted unlabelled loss of one batch of crops (``(B, C, S, S)`` views, ``(B, S, S)`` valid)."""
        with torch.no_grad():
            probabilities = torch.softmax(self.teacher(weak).float() / self.config.teacher_temperature, dim=1)
        labels = pseudo_labels(probabilities, valid, self.config.threshold, self.config.class_share)
        strong, labels = cutmix(strong, labels, self.config.cutmix, generator)
        logits = student(strong).float()
        learnt = labels != IGNORE_INDEX
        total = max(int(valid.sum()), 1)
        loss = F.cross_entropy(logits, labels.long(), ignore_index=IGNORE_INDEX, reduction="sum") / total
        ramp = 1.0 if self.config.ramp_steps == 0 else min(1.0, global_step / self.config.ramp_steps)
        return UnlabelledStep(loss * self.config.weight * ramp, float(learnt.sum()) / total)


def pseudo_labels(
    probabilities: torch.Tensor, valid: torch.Tensor, threshold: float, class_share: float
) -> torch.Tensor:
    """``(B, S, S)`` class indices the teacher is sure enough of, ``IGNORE_INDEX`` elsewhere: probability at
    least ``threshold``, or among the ``class_share`` most confident pixels of the class predicted."""
    confidence, labels = probabilities.max(dim=1)
    keep = (confidence >= threshold) & valid
    if class_share > 0:
        for k in labels[valid].unique():
            of_class = (labels == k) & valid
            scores = confidence[of_class]
            kept = max(1, round(scores.numel() * class_share))
            cut = scores.kthvalue(scores.numel() - kept + 1).values  # the least confident of the kept
            keep |= of_class & (confidence >= torch.clamp(cut, max=threshold))
    return torch.where(keep, labels, torch.full_like(labels, IGNORE_INDEX))


def cutmix(
    images: torch.Tensor, labels: torch.Tensor, probability: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crop, with ``probability``, gets a random box (a quarter to a half of its area) of the next crop
    in the batch, pixels and labels alike."""
    batch, _, height, width = images.shape
    if batch < 2 or probability == 0:
        return images, labels
    images, labels = images.clone(), labels.clone()
    draws = torch.rand(batch, 5, generator=generator)
    for i in range(batch):
        if draws[i, 0] >= probability:
            continue
        area = 0.25 + 0.25 * float(draws[i, 1])
        side_h, side_w = max(1, round(height * area**0.5)), max(1, round(width * area**0.5))
        top, left = int(draws[i, 2] * (height - side_h + 1)), int(draws[i, 3] * (width - side_w + 1))
        other = (i + 1) % batch
        images[i, :, top : top + side_h, left : left + side_w] = images[
            other, :, top : top + side_h, left : left + side_w
        ]
        labels[i, top : top + side_h, left : left + side_w] = labels[other, top : top + side_h, left : left + side_w]
    return images, labels
