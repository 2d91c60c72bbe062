# facekp in a container: CPU torch by default.
#   docker build -t facekp .
#   docker run --rm -v "$PWD/faces_data:/work/faces_data" -v "$PWD/runs:/work/runs" facekp train --epochs 5
# CUDA: the PyTorch CUDA wheels carry their own CUDA libraries (the host needs only the driver
# and the NVIDIA container toolkit), so the slim base works; pick the wheel index by tag:
#   docker build --build-arg TORCH_VARIANT=cu128 -t facekp:cu128 .
#   docker run --gpus all ... facekp:cu128 train --set train.accelerator=gpu
# BASE_IMAGE may name another Python 3.11 image (e.g. one with a pinned digest).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# git: DVC uses it inside a repository. Nothing else is needed (OpenCV is the headless wheel).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 facekp

# Dependencies first, from the lock only, so code changes do not reinstall them.
COPY requirements.lock /tmp/requirements.lock
RUN python -m pip install --extra-index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

COPY pyproject.toml README.md /src/
COPY facekp_cli /src/facekp_cli
RUN python -m pip install --no-deps /src && rm -rf /src

WORKDIR /work
COPY --chown=facekp:facekp conf.toml /work/conf.toml
# Outputs live on volumes: the dataset, training runs (checkpoints) and MLflow tracking.
ENV FACEKP_TRAIN__BEST_PATH=/work/runs/best.ckpt \
    FACEKP_TRACKING__URI=sqlite:////work/mlruns/mlflow.db
RUN mkdir -p /work/faces_data /work/runs /work/mlruns && chown -R facekp:facekp /work
VOLUME ["/work/faces_data", "/work/runs", "/work/mlruns"]

USER facekp
ENTRYPOINT ["facekp"]
CMD ["--help"]
