function mips = tinybrain_loadlibrary(img, factor, num_mips, prefix)
% TINYBRAIN_LOADLIBRARY  Average pyramid of a uint8 volume through MATLAB's loadlibrary.
%
%   mips = tinybrain_loadlibrary(img, factor, num_mips, prefix)
%
% No compiler and no MEX file: MATLAB loads libtinybrain.so with its header and calls
% the _packed entry point, which writes all mips into one buffer (the other entry
% points take an array of output pointers, which calllib cannot build). prefix is where
% scripts/install.sh put tinybrain, e.g. '/usr/local'. Returns a cell array, mip 1 first.
%
%   img = uint8(randi([0 255], 512, 512, 16));
%   mips = tinybrain_loadlibrary(img, [2 2 1], 3, '/usr/local');
%
% MATLAB only (GNU Octave has no loadlibrary: use tinybrain_mex there). Not run here:
% tests/packaging/test_matlab_loadlibrary_mirror.py makes the same calls, in the same
% order, with the same argument types, through Python's ctypes, and checks the values.
% Other element types: pass the matching tb_dtype code and buffer type (see README.md).

  TB_UINT8 = int32(1);                        % tb_dtype codes, from tinybrain.h
  if ~libisloaded('tinybrain')
    loadlibrary(fullfile(prefix, 'lib', 'libtinybrain.so'), ...
                fullfile(prefix, 'include', 'tinybrain.h'), 'alias', 'tinybrain');
  end

  shape = uint64(size(img));                  % const size_t *  -> uint64 vector
  ndim = uint64(numel(shape));                % size_t          -> uint64
  factor = uint64([factor, ones(1, numel(shape) - numel(factor))]);
  num_mips = uint64(num_mips);

  % The packed buffer's length, in elements.
  len = libpointer('uint64Ptr', uint64(0));
  check(calllib('tinybrain', 'tb_pyramid_len', ndim, shape, factor, num_mips, len));

  % All mips, one after another, each column-major. [] passes NULL strides: the
  % input is column-major, the library's default.
  out = libpointer('voidPtr', zeros(len.Value, 1, 'uint8'));
  check(calllib('tinybrain', 'tb_downsample_with_averaging_packed', ...
                libpointer('voidPtr', img), TB_UINT8, ndim, shape, [], factor, num_mips, ...
                uint32(0), out));
  setdatatype(out, 'uint8Ptr', double(len.Value), 1);
  buffer = out.Value;

  % Cut the buffer into mips, each of the shape tb_mip_shape gives.
  mips = cell(1, double(num_mips));
  offset = 0;
  for k = 1:double(num_mips)
    mip_shape = libpointer('uint64Ptr', zeros(1, ndim, 'uint64'));
    check(calllib('tinybrain', 'tb_mip_shape', ndim, shape, factor, uint64(k), mip_shape));
    dims = double(mip_shape.Value);
    n = prod(dims);
    mips{k} = reshape(buffer(offset + 1 : offset + n), dims);
    offset = offset + n;
  end
end

function check(status)
  if status ~= 0
    message = calllib('tinybrain', 'tb_last_error_message');
    error(['tinybrain:' calllib('tinybrain', 'tb_status_name', status)], '%s', message);
  end
end
