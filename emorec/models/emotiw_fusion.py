"""The multimodal fusion network of Pini et al. (EmotiW 2017).

Inputs are the features of the three trained (then frozen) branches of one
video, computed beforehand (the paper trains the fusion "using the trained
branches, without the softmax layer, as feature extractors"):

    frame_features  (B, 48, 256)  the frame branch's FC 256 for 48 faces
    slice_features  (B, 32, 256)  the clip branch's FC 256 for 32 16-frame slices
    audio_features  (B, 128)      the audio branch's last LSTM output, 1 s mid-video

    frames → NetVLAD K=8 (2048) → FC 128 ┐
    slices → NetVLAD K=8 (2048) → FC 128 ├ concat 384 → dropout → FC 128 → dropout → softmax 7
    audio  ─────────────────────────────┘

Each FC is followed by batch norm and ReLU (the paper's batch norm before
every activation of a trained layer), without bias. Dropout sits between
fully connected layers; the paper gives only the range of its keep
probabilities (0.1-0.8). We keep 0.8 of the concatenated vector, the fusion
network's input, and 0.5 of the hidden FC 128, following the input/hidden
values of Srivastava et al. [39], which the paper cites for dropout. No
dropout follows the NetVLAD layers: their outputs are unit vectors whose
scale would be distorted, and they feed an FC 128 directly.

Parameters (D = 256, K = 8, 7 classes): 2 × (NetVLAD 4,104 + FC 262,144 +
batch norm 512) + FC 49,152 + batch norm 512 + softmax 903 = 584,087.
"""

from __future__ import annotations

import keras

from emorec.models.emotiw_common import (
    NUM_CLASSES,
    OUTPUT_CLASS,
    OUTPUT_FEATURES,
    check_keep_prob,
    check_num_classes,
    dense_bn_relu,
    dropout,
    softmax_classifier,
)
from emorec.models.netvlad import NetVLAD

FRAME_FEATURES = "frame_features"
SLICE_FEATURES = "slice_features"
AUDIO_FEATURES = "audio_features"
FUSION_FRAMES = 48
FUSION_SLICES = 32


def build_emotiw_fusion(
    *,
    num_classes: int = NUM_CLASSES,
    frames: int = FUSION_FRAMES,
    slices: int = FUSION_SLICES,
    frame_dim: int = 256,
    slice_dim: int = 256,
    audio_dim: int = 128,
    num_clusters: int = 8,
    branch_units: int = 128,
    fusion_units: int = 128,
    input_keep_prob: float = 0.8,
    hidden_keep_prob: float = 0.5,
    bn_momentum: float | None = None,
    name: str = "emotiw_fusion",
) -> keras.Model:
    """Build the fusion network on precomputed branch features.

    Args:
        num_classes: softmax size (7).
        frames: frame features per video (48); ``None`` accepts any number.
        slices: slice features per video (32); ``None`` accepts any number.
        frame_dim: size of a frame feature (256).
        slice_dim: size of a slice feature (256).
        audio_dim: size of the audio feature (128).
        num_clusters: NetVLAD clusters K (8).
        branch_units: FC units after each NetVLAD (128).
        fusion_units: FC units after the concatenation (128).
        input_keep_prob: dropout keep probability of the concatenated vector (0.8).
        hidden_keep_prob: dropout keep probability of the fusion FC (0.5).
        bn_momentum: momentum of the batch norms (None: Keras' 0.99).
        name: the model's name.

    Returns:
        A model ``{"frame_features", "slice_features", "audio_features"}`` →
        ``{"emotion_class": (B, C), "features": (B, fusion_units)}``.

    Raises:
        ConfigError: invalid class count or keep probability.
    """
    num_classes = check_num_classes(num_classes)
    input_keep_prob = check_keep_prob("input_keep_prob", input_keep_prob)
    hidden_keep_prob = check_keep_prob("hidden_keep_prob", hidden_keep_prob)
    frame_in = keras.Input(
        (None if frames is None else int(frames), int(frame_dim)), name=FRAME_FEATURES
    )
    slice_in = keras.Input(
        (None if slices is None else int(slices), int(slice_dim)), name=SLICE_FEATURES
    )
    audio_in = keras.Input((int(audio_dim),), name=AUDIO_FEATURES)

    frame_vlad = NetVLAD(num_clusters, name="frame_netvlad")(frame_in)
    frame_vec = dense_bn_relu(frame_vlad, int(branch_units), "frame_vlad_fc", bn_momentum)
    slice_vlad = NetVLAD(num_clusters, name="slice_netvlad")(slice_in)
    slice_vec = dense_bn_relu(slice_vlad, int(branch_units), "slice_vlad_fc", bn_momentum)
    joint = keras.layers.Concatenate(name="fusion_concat")([frame_vec, slice_vec, audio_in])
    x = dropout(joint, input_keep_prob, "fusion_input_dropout")
    hidden = dense_bn_relu(x, int(fusion_units), "fusion_fc", bn_momentum)
    x = dropout(hidden, hidden_keep_prob, "fusion_fc_dropout")
    probs = softmax_classifier(x, num_classes, "fusion_softmax")
    return keras.Model(
        {FRAME_FEATURES: frame_in, SLICE_FEATURES: slice_in, AUDIO_FEATURES: audio_in},
        {OUTPUT_CLASS: probs, OUTPUT_FEATURES: hidden},
        name=name,
    )
