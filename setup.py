"""espnet-bilevel: bilevel joint unsupervised + supervised training for ESPnet.

Install (the supported way, which also pins torch): ``bash tools/install.sh``.
"""
from setuptools import find_packages, setup

# ESPnet 202511 is tested with torch 2.5-2.9; torchaudio must match torch's minor version and is
# needed at import time by espnet2.tasks.asr.  tools/install.sh pins the tested pair 2.9.1.
install_requires = [
    "espnet==202511",
    "torch>=2.5.1,<2.10",
    "torchaudio>=2.5.1,<2.10",
    "sentencepiece",
    "kaldiio>=2.18",
    "humanfriendly",
    "jiwer",
    "pyyaml",
    "soundfile",
    "tensorboard",
    "matplotlib",
    "scipy",  # paired t-test over seeds (compare_systems); already an ESPnet dependency
]

setup(
    name="espnet_bilevel",
    version="0.1.0",
    description="Bilevel joint unsupervised and supervised training (BL-JUST and family) for ESPnet",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["espnet_bilevel", "espnet_bilevel.*"]),
    python_requires=">=3.9,<3.13",
    install_requires=install_requires,
    extras_require={"test": ["pytest>=7.0.0,<8.4.0", "pytest-timeout", "pytest-xdist>=3.5"]},
    entry_points={
        "console_scripts": [
            "bilevel_asr_train=espnet_bilevel.bin.bilevel_asr_train:main",
            "bilevel_export=espnet_bilevel.bin.bilevel_export:main",
            "average_checkpoints=espnet_bilevel.bin.average_checkpoints:main",
        ]
    },
    license="Apache-2.0",
)
