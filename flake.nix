# Nix development shell and packages for FlareDB.
#
# Nix is not installed on the machines this project is developed and tested
# on, so this file has not been evaluated there; it is written to the
# nixpkgs conventions (buildGoModule, mkShell) and kept in step with the
# Makefile. After a change to go.mod, set vendorHash to the value nix
# prints on the first failed build.
{
  description = "FlareDB: a distributed key-value store with compare-and-swap and pluggable storage engines";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs = { self, nixpkgs, flake-utils }:
    flake-utils.lib.eachDefaultSystem (system:
      let
        pkgs = import nixpkgs { inherit system; };
        # grocksdb v1.7.15 builds against RocksDB 7.x (Debian 12 ships 7.8.3).
        rocksdb = pkgs.rocksdb_7_10 or pkgs.rocksdb;
        common = {
          version = "0.1.0";
          src = ./.;
          vendorHash = pkgs.lib.fakeHash;
          nativeBuildInputs = [ pkgs.pkg-config ];
          buildInputs = [ rocksdb pkgs.snappy pkgs.lz4 pkgs.zstd pkgs.zlib pkgs.bzip2 ];
          env.CGO_ENABLED = "1";
          # Tests need writable temporary directories and loopback sockets;
          # run them with `make test` in the dev shell instead.
          doCheck = false;
        };
      in
      {
        packages = {
          flaredb-server = pkgs.buildGoModule (common // {
            pname = "flaredb-server";
            subPackages = [ "cmd/flaredb-server" ];
          });
          flaredb = pkgs.buildGoModule (common // {
            pname = "flaredb";
            subPackages = [ "cmd/flaredb" ];
          });
          plugins = pkgs.buildGoModule (common // {
            pname = "flaredb-plugins";
            subPackages = [ "cmd/flaredb-rocksdb-plugin" "cmd/flaredb-badger-plugin" ];
          });
          default = self.packages.${system}.flaredb-server;
        };

        devShells.default = pkgs.mkShell {
          packages = [
            pkgs.go
            rocksdb
            pkgs.snappy
            pkgs.lz4
            pkgs.zstd
            pkgs.zlib
            pkgs.bzip2
            pkgs.pkg-config
            pkgs.protobuf
            pkgs.gnumake
            pkgs.git
          ];
          CGO_ENABLED = "1";
          shellHook = ''
            echo "FlareDB dev shell: make run | make test"
          '';
        };
      });
}
