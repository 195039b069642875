function failures = test_tinybrain_mex()
% The MEX gateway (examples-c/matlab/tinybrain_mex.c) under GNU Octave, every value
% checked against plain Octave code written from SEMANTICS.md (not against the library).
% Run by tests/packaging/run.sh with the built tinybrain_mex.mex on the path:
%   octave-cli --eval "if test_tinybrain_mex(), error('tinybrain:test', 'failed'), end"
% Prints one PASS/FAIL line per check; returns the number of failures.
  failures = 0;
  rand('seed', 7); % Octave's old generator: the same data on every run

  % Averaging, uint8, odd sizes, 2 mips: replicate-pad, sum 2x2 blocks in a wide
  % accumulator, mip k = floor(acc_k / 4^k).
  img = uint8(floor(rand(9, 7, 3) * 256));
  mips = tinybrain_mex('averaging', img, [2 2 1], 2);
  acc1 = sum2x2(double(img));
  acc2 = sum2x2(acc1);
  failures += check('averaging uint8 9x7x3: 1x2 cell of uint8', iscell(mips) && isequal(size(mips), [1 2]) ...
                    && strcmp(class(mips{1}), 'uint8'));
  failures += check('averaging uint8: mip shapes 5x4x3, 3x2x3', isequal(size(mips{1}), [5 4 3]) ...
                    && isequal(size(mips{2}), [3 2 3]));
  failures += check('averaging uint8: mip 1 = floor(sum / 4)', isequal(mips{1}, uint8(floor(acc1 / 4))));
  failures += check('averaging uint8: mip 2 = floor(sum / 16)', isequal(mips{2}, uint8(floor(acc2 / 16))));

  % int16 with negative values: truncation toward zero.
  v = int16(floor(rand(6, 8) * 2000) - 1000);
  m = tinybrain_mex('averaging', v, [2 2]);
  failures += check('averaging int16: truncation toward zero', isequal(m{1}, int16(fix(sum2x2(double(v)) / 4))));

  % double: the mean, to rounding.
  d = rand(6, 4, 2);
  m = tinybrain_mex('averaging', d, [2 2 1]);
  failures += check('averaging double: the mean of each 2x2 block', ...
                    max(abs(m{1}(:) - reshape(sum2x2(d) / 4, [], 1))) < 1e-12);

  % Sparse averaging: zeros left out, 0 where a block is all zero.
  s = uint8([0 0 10 20; 0 0 0 30; 5 7 0 0; 9 0 0 0]);
  m = tinybrain_mex('averaging', s, [2 2], 1, true);
  failures += check('sparse averaging: mean of the nonzero voxels', isequal(m{1}, uint8([0 20; 7 0])));

  % Segmentation, uint32, odd sizes: a if a==b or a==c, else b if b==c, else d; each
  % mip from the previous one.
  labels = uint32(floor(rand(11, 9, 2) * 4)) + uint32(4000000000);
  m = tinybrain_mex('segmentation', labels, [2 2 1], 2);
  want1 = mode2x2(labels);
  failures += check('segmentation uint32 11x9x2: mip 1 follows the 2x2 rule', isequal(m{1}, want1));
  failures += check('segmentation uint32: mip 2 is the mode of mip 1', isequal(m{2}, mode2x2(want1)));

  % Min and max over clipped windows (5x7 with 2x3 windows), single and int8.
  x = single(rand(5, 7));
  failures += check('min_pooling single 5x7, factor [2 3]', ...
                    isequal(pick(tinybrain_mex('min_pooling', x, [2 3])), pool(x, [2 3], @min)));
  y = int8(floor(rand(5, 7) * 256) - 128);
  failures += check('max_pooling int8 5x7, factor [2 3]', ...
                    isequal(pick(tinybrain_mex('max_pooling', y, [2 3])), pool(y, [2 3], @max)));

  % Striding: the first voxel of each window.
  z = uint16(floor(rand(10, 9, 4) * 65536));
  m = tinybrain_mex('striding', z, [2 3 2], 2);
  failures += check('striding uint16, 2 mips', isequal(m{1}, z(1:2:end, 1:3:end, 1:2:end)) ...
                    && isequal(m{2}, z(1:4:end, 1:9:end, 1:4:end)));

  % uint64 beyond 2^53 survives (no detour through double).
  big = bitshift(uint64(1), 60) + uint64([1 2; 3 3]);
  m = tinybrain_mex('segmentation', big, [2 2]);
  failures += check('segmentation uint64 above 2^53 is exact', m{1} == bitshift(uint64(1), 60) + uint64(3));

  failures += check('num_mips = 0 gives a 1x0 cell', isequal(size(tinybrain_mex('averaging', img, [2 2], 0)), [1 0]));
  failures += check('factor [2 2 1 1] on a 2-d array (trailing 1s)', ...
                    isequal(size(pick(tinybrain_mex('averaging', s, [2 2 1 1]))), [2 2]));
  failures += check('version matches the header', strcmp(tinybrain_mex('version'), getenv('TINYBRAIN_VERSION')));

  % Errors: identifier tinybrain:<status>, the library's message.
  failures += check_error('a zero factor', 'tinybrain:TB_ERR_FACTOR', @() tinybrain_mex('averaging', img, [2 0 1]));
  failures += check_error('sparse min pooling', 'tinybrain:TB_ERR_UNSUPPORTED', ...
                          @() tinybrain_mex('min_pooling', img, [2 2 1], 1, true));
  failures += check_error('a logical image', 'tinybrain:class', @() tinybrain_mex('averaging', true(4), [2 2]));
  failures += check_error('an unknown method', 'tinybrain:usage', @() tinybrain_mex('median', img, [2 2 1]));
  failures += check_error('a fractional factor', 'tinybrain:usage', @() tinybrain_mex('averaging', img, [1.5 2]));
end

function failed = check(name, ok)
  failed = ~ok;
  if ok
    printf('PASS %s\n', name);
  else
    printf('FAIL %s\n', name);
  end
end

function failed = check_error(name, id, fn)
  try
    fn();
    failed = check([name ' raises ' id], false);
  catch err
    printf('     %s -> %s: %s\n', name, err.identifier, err.message);
    failed = check([name ' raises ' id], strcmp(err.identifier, id) && ~isempty(err.message));
  end
end

function m = pick(mips)
  m = mips{1};
end

function a = pad_even(a)
  % Replicate padding of the first two axes to even sizes.
  if mod(size(a, 1), 2), a = a([1:end end], :, :); end
  if mod(size(a, 2), 2), a = a(:, [1:end end], :); end
end

function s = sum2x2(a)
  a = pad_even(a);
  s = a(1:2:end, 1:2:end, :) + a(2:2:end, 1:2:end, :) + a(1:2:end, 2:2:end, :) + a(2:2:end, 2:2:end, :);
end

function m = mode2x2(l)
  l = pad_even(l);
  a = l(1:2:end, 1:2:end, :); b = l(2:2:end, 1:2:end, :);
  c = l(1:2:end, 2:2:end, :); d = l(2:2:end, 2:2:end, :);
  m = d;
  m(b == c) = b(b == c);
  take_a = (a == b) | (a == c);
  m(take_a) = a(take_a);
end

function out = pool(x, f, reduce)
  % reduce over clipped f(1) x f(2) windows of a 2-d array
  out = zeros(ceil(size(x) ./ f), class(x));
  for i = 1:size(out, 1)
    for j = 1:size(out, 2)
      w = x((i - 1) * f(1) + 1 : min(i * f(1), end), (j - 1) * f(2) + 1 : min(j * f(2), end));
      out(i, j) = reduce(w(:));
    end
  end
end
