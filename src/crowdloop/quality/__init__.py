"""Truth inference: turn noisy crowd answers into labels with a confidence."""
from crowdloop.quality.dawid_skene import DawidSkene, OneCoinDawidSkene
from crowdloop.quality.majority_vote import MajorityVote, Wawa
from crowdloop.quality.zero_based_skill import ZeroBasedSkill
