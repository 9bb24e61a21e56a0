"""Network layers: find the TCP segment in a captured frame (link layer, IP, tunnels)."""
