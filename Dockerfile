# syntax=docker/dockerfile:1

FROM node:20-bookworm-slim AS build
# better-sqlite3 installs a prebuilt binary when one matches the platform and otherwise
# compiles with node-gyp, which needs python3, make and g++; this stage is thrown away, so
# having the toolchain costs nothing in the final image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# The root "prepare" script runs tsc, but the sources are not here yet (copying them after
# this step keeps the dependency layer cached across source edits): skip every script, then
# run the one install script that matters, better-sqlite3's.
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY . .
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    LOG_FORMAT=json \
    DSTORE_DATA_DIR=/var/lib/dstore
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts because "prepare" would run tsc, a devDependency that --omit=dev leaves
# out. That also skips better-sqlite3's install script; rather than rebuild it here (which
# would need the toolchain or a download), take the binary built in the first stage: same
# base image, same Node ABI, same locked version.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/node_modules/better-sqlite3/build/Release/better_sqlite3.node \
     node_modules/better-sqlite3/build/Release/
COPY --from=build /app/dist ./dist
# The Redis scripts are read at run time from ../../common/lua relative to dist/common.
COPY --from=build /app/common/lua ./common/lua
# The worker's shard and id file; a volume mounted here starts with this ownership.
RUN mkdir -p /var/lib/dstore && chown node:node /var/lib/dstore
USER node
# Both processes finish in-flight work and exit on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["coordinator"]
